//! JWKS behaviour against a real HTTP server.
mod support;
