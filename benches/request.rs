//! What the proxy does to every request before any token is looked at:
//! `cargo bench --bench request`.
//!
//! - `path/*`: [`request_path::normalize`] on a typical path (already normal: the fast path,
//!   nothing copied), a path that needs work (escapes, dot-segments, repeated slashes), and the
//!   worst path baton accepts: [`MAX_PATH_BYTES`] of short segments full of escapes and
//!   dot-segments, so every byte takes the slow path (and the same shape at 256 bytes, a long
//!   real path);
//! - `authorization/bearer`: reading `Authorization: Bearer <a 1 KiB token>`.

use std::hint::black_box;

use baton::authorization::Credentials;
use baton::request_path::{self, MAX_PATH_BYTES};
use criterion::{Criterion, criterion_group, criterion_main};

fn path(c: &mut Criterion) {
    let mut group = c.benchmark_group("path");
    let typical = "/api/v1/users/42/orders";
    let messy = "/public/./%61pi//v1/users/../users/42/%7Eorders/";
    // `/%2e/a%2Db/..` repeated: a decoded escape, a dot-segment, a kept segment, a parent.
    let unit = "/%2e/a%2Db/%41/..";
    let worst_short: String = unit.repeat(256 / unit.len());
    let worst: String = unit.repeat(MAX_PATH_BYTES / unit.len());
    assert!(request_path::normalize(&worst).is_ok());
    group.bench_function("typical", |b| {
        b.iter(|| request_path::normalize(black_box(typical)))
    });
    group.bench_function("messy", |b| {
        b.iter(|| request_path::normalize(black_box(messy)))
    });
    group.bench_function("worst-shape-256B", |b| {
        b.iter(|| request_path::normalize(black_box(&worst_short)))
    });
    group.bench_function("worst-allowed-8KiB", |b| {
        b.iter(|| request_path::normalize(black_box(&worst)))
    });
    group.finish();
}

fn authorization(c: &mut Criterion) {
    let value = format!("Bearer {}", "a".repeat(1024));
    c.bench_function("authorization/bearer", |b| {
        b.iter(|| Credentials::parse(black_box(value.as_bytes())))
    });
}

criterion_group!(benches, path, authorization);
criterion_main!(benches);
