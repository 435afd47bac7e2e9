//! What the admin API writes: identity providers, token providers and signing keys added at
//! run time, and the state file that keeps them across restarts.
//!
//! The state is a JSON document in State Backed's own shapes (camelCase). Secrets in it (an
//! IdP's shared `key`, a key's signing secret) are sealed with AES-256-GCM, each bound to its
//! entry (the entry's identity is the AEAD's associated data, so a sealed secret cannot be
//! moved to another entry). The whole document carries an HMAC-SHA256 (`mac`): the file is a
//! trust anchor (it names IdPs and their JWKS URLs), so an edit to any of it, or the wrong
//! master key, is refused at load. Both keys are derived from the master key with HKDF. The
//! file is replaced atomically: a temp file in the same directory (mode 0600), fsync, rename,
//! fsync of the directory.
//!
//! Entries from the TOML file are never written here; the admin API lists them read-only.
//! Every change is validated by building the whole configuration (file + state) with the
//! same rules as the file before anything is saved or served.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::spec::{IdpSpec, InlineSecret, KeySpec, TokenProviderSpec};
use crate::config::{ApiEntries, Config};
use crate::idp::url_policy::own_listener;
use crate::secret::{LENIENT_URL_SAFE, Secret};
use crate::token::b64url;

/// The state file's format version.
const VERSION: u32 = 1;

/// How the temp files of a state write start; [`TEMP_RANDOM_CHARS`] random ASCII letters
/// and digits follow (tempfile's alphabet).
const TEMP_PREFIX: &str = ".baton-state.";
/// How many random characters end a temp file's name.
const TEMP_RANDOM_CHARS: usize = 6;

/// Entries written through the admin API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiState {
    version: u32,
    /// The store's revision this document is (absent in a state file). Covered by the MAC, so
    /// a document cannot be replayed into the store as another revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<i64>,
    /// HMAC-SHA256 of the document without this field (only in the file, checked at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    /// Identity providers, by (`iss`, `aud`).
    #[serde(default)]
    pub idps: Vec<StoredIdp>,
    /// Token providers, by `service`.
    #[serde(default)]
    pub token_providers: Vec<StoredProvider>,
    /// Signing keys, by `id`.
    #[serde(default)]
    pub keys: Vec<StoredKey>,
}

/// An identity provider as State Backed's `POST /idps` takes it, its `key` sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredIdp {
    /// `iss` of its tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `aud` of its tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Allowed algorithms.
    pub algs: Vec<String>,
    /// Where its public keys are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Its key (base64url, State Backed's form), sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Sealed>,
    /// Claim mapping.
    pub mapping: Map<String, Value>,
    /// A CEL condition over the verified claims (baton's extension of State Backed's shape;
    /// absent from files written before it, and then from the MAC'd document too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A token provider as State Backed's `POST /token-providers` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredProvider {
    /// Its service name.
    pub service: String,
    /// The key that signs its tokens.
    pub key_id: String,
    /// Claim mapping.
    pub mapping: Map<String, Value>,
    /// A CEL condition over the intermediate claims, `idp`, `client` and `actor` (baton's
    /// extension of State Backed's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A signing key made by `POST /keys` (HS256, a random secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredKey {
    /// `sbk_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Scopes, kept and listed (baton does not act on them).
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The secret, sealed.
    pub secret: Sealed,
}

/// A secret sealed with AES-256-GCM: a random 96-bit nonce and the ciphertext with its tag,
/// both base64url.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    nonce: String,
    ciphertext: String,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed([ciphertext])")
    }
}

/// A request of the admin API that cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The request is malformed or makes an invalid configuration (400).
    #[error("{0}")]
    Invalid(String),
    /// No such entry (404).
    #[error("{0}")]
    NotFound(String),
    /// The entry comes from the config file, or others depend on it (409).
    #[error("{0}")]
    Conflict(String),
    /// The state file cannot be read, written or unsealed (500; nothing changed).
    #[error("{0}")]
    Storage(String),
    /// The store cannot be reached now (503; nothing changed, try again).
    #[error("{0}")]
    Unavailable(String),
}

// === impl ApiState ===

impl ApiState {
    /// Reads the state file and checks its MAC; a missing file is an empty state.
    pub fn load(path: &Path, master: &Secret) -> Result<Self, AdminError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(e) => {
                return Err(AdminError::Storage(format!(
                    "cannot read the state file {}: {e}",
                    path.display()
                )));
            }
        };
        Self::from_document(
            &bytes,
            &format!("the state file {}", path.display()),
            master,
        )
    }

    /// Parses a sealed document (a state file's, a store revision's) and checks its MAC;
    /// `what` names it in errors.
    pub fn from_document(bytes: &[u8], what: &str, master: &Secret) -> Result<Self, AdminError> {
        let mut state: Self = serde_json::from_slice(bytes)
            .map_err(|e| AdminError::Storage(format!("{what} is invalid: {e}")))?;
        if state.version != VERSION {
            return Err(AdminError::Storage(format!(
                "{what} has version {}; this baton reads version {VERSION}",
                state.version
            )));
        }
        let mac = state.mac.take().unwrap_or_default();
        let mac = LENIENT_URL_SAFE.decode(mac).unwrap_or_default();
        if hmac::verify(&mac_key(master), &state.canonical()?, &mac).is_err() {
            return Err(AdminError::Storage(format!(
                "{what} does not match the master key (another key, or edited outside baton)"
            )));
        }
        Ok(state)
    }

    /// The document with its MAC, as [`ApiState::from_document`] reads it.
    pub fn to_document(&self, master: &Secret) -> Result<Vec<u8>, AdminError> {
        let mut signed = self.clone();
        signed.mac = Some(b64url(
            hmac::sign(&mac_key(master), &self.canonical()?).as_ref(),
        ));
        serde_json::to_vec_pretty(&signed)
            .map_err(|e| AdminError::Storage(format!("cannot encode the state: {e}")))
    }

    /// The store revision this document is, when it is one.
    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    /// This state as the store's `revision`.
    pub fn with_revision(mut self, revision: i64) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Whether the state has no entries (whatever its revision).
    pub fn is_empty(&self) -> bool {
        self.idps.is_empty() && self.token_providers.is_empty() && self.keys.is_empty()
    }

    /// The same entries with every secret sealed again under `new` (they open with `old`,
    /// as the whole document's MAC must). For a master key's rotation.
    pub fn reseal(&self, old: &Secret, new: &Secret) -> Result<Self, AdminError> {
        let mut resealed = self.clone();
        for key in &mut resealed.keys {
            let aad = key_aad(&key.id);
            key.secret = seal(new, &aad, unseal(old, &aad, &key.secret)?.expose())?;
        }
        for idp in &mut resealed.idps {
            let aad = idp_aad(idp.iss.as_deref(), idp.aud.as_deref());
            if let Some(sealed) = &idp.key {
                idp.key = Some(seal(new, &aad, unseal(old, &aad, sealed)?.expose())?);
            }
        }
        Ok(resealed)
    }

    /// The document the MAC covers: the state without its MAC, as serde writes it (field
    /// order is fixed, and mappings keep the order they were read in).
    fn canonical(&self) -> Result<Vec<u8>, AdminError> {
        let mut bare = self.clone();
        bare.mac = None;
        serde_json::to_vec(&bare)
            .map_err(|e| AdminError::Storage(format!("cannot encode the state: {e}")))
    }

    /// No entries.
    pub fn empty() -> Self {
        Self {
            version: VERSION,
            ..Self::default()
        }
    }

    /// Writes the state file atomically (readable by its owner only), with its MAC. Once
    /// this returns `Ok` the new file is in place; an error means the old one still is.
    pub fn save(&self, path: &Path, master: &Secret) -> Result<(), AdminError> {
        let fail = |what: &str, e: std::io::Error| {
            AdminError::Storage(format!("cannot {what} {}: {e}", path.display()))
        };
        let json = self.to_document(master)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .rand_bytes(TEMP_RANDOM_CHARS)
            .tempfile_in(dir)
            .map_err(|e| fail("create a temp file next to", e))?;
        temp.write_all(&json)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| fail("write a temp file next to", e))?;
        temp.persist(path).map_err(|e| fail("replace", e.error))?;
        // The rename is durable once the directory is. It has happened, though: a failure
        // here is no reason to serve the old state while the file holds the new one.
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %e, path = %path.display(), "cannot sync the state file's directory");
        }
        Ok(())
    }

    /// The entries as config specs, their secrets unsealed, for [`Config::from_toml_with`].
    pub fn entries(&self, master: &Secret) -> Result<ApiEntries, AdminError> {
        let mut entries = ApiEntries::default();
        for key in &self.keys {
            let secret = unseal(master, &key_aad(&key.id), &key.secret)?;
            entries.keys.push((
                format!("keys[id={}] (admin API)", key.id),
                KeySpec {
                    id: key.id.clone(),
                    algorithm: "HS256".to_owned(),
                    secret_env: None,
                    secret_file: None,
                    secret: Some(secret_text(secret)?),
                    private_key_file: None,
                    private_key_env: None,
                    retired: false,
                },
            ));
        }
        for idp in &self.idps {
            let key = match &idp.key {
                Some(sealed) => Some(secret_text(unseal(
                    master,
                    &idp_aad(idp.iss.as_deref(), idp.aud.as_deref()),
                    sealed,
                )?)?),
                None => None,
            };
            entries.idps.push((
                format!(
                    "{} (admin API)",
                    idp_label(idp.iss.as_deref(), idp.aud.as_deref())
                ),
                IdpSpec {
                    name: None,
                    issuer: idp.iss.clone(),
                    audience: idp.aud.clone(),
                    algorithms: Some(idp.algs.clone()),
                    jwks_url: idp.jwks_url.clone(),
                    discovery: false,
                    allow_http: false,
                    key,
                    key_env: None,
                    key_file: None,
                    leeway: None,
                    mapping: idp.mapping.clone(),
                    condition: idp.condition.clone(),
                    introspection: None,
                    token_prefix: None,
                    introspection_cache_ttl: None,
                },
            ));
        }
        for provider in &self.token_providers {
            entries.token_providers.push((
                format!("token_providers[service={}] (admin API)", provider.service),
                TokenProviderSpec {
                    service: provider.service.clone(),
                    key: provider.key_id.clone(),
                    mapping: provider.mapping.clone(),
                    ttl: None,
                    profile: None,
                    audience: None,
                    clients: Vec::new(),
                    condition: provider.condition.clone(),
                    delegation: None,
                },
            ));
        }
        Ok(entries)
    }

    /// Adds or replaces the identity provider with `idp`'s (`iss`, `aud`), sealing its key.
    /// One from the config file cannot be replaced, and its `jwksUrl` may not point at one of
    /// baton's own listeners. Blocks (the URL's host is resolved).
    pub fn upsert_idp(
        &mut self,
        config: &Config,
        master: &Secret,
        request: IdpRequest,
    ) -> Result<(), AdminError> {
        let (iss, aud) = (request.iss, request.aud);
        if iss.is_none() && aud.is_none() {
            return Err(AdminError::Invalid(
                "an identity provider needs iss, aud, or both".to_owned(),
            ));
        }
        let position = self.idps.iter().position(|i| i.iss == iss && i.aud == aud);
        if position.is_none()
            && config
                .idps
                .iter()
                .any(|i| i.issuer == iss && i.audience == aud)
        {
            return Err(read_only(&idp_label(iss.as_deref(), aud.as_deref())));
        }
        if let Some(jwks_url) = &request.jwks_url {
            refuse_own_listener(jwks_url, config)?;
        }
        let key = request
            .key
            .map(|key| {
                seal(
                    master,
                    &idp_aad(iss.as_deref(), aud.as_deref()),
                    key.as_bytes(),
                )
            })
            .transpose()?;
        let stored = StoredIdp {
            iss,
            aud,
            algs: request.algs,
            jwks_url: request.jwks_url,
            key,
            mapping: request.mapping,
            condition: request.condition,
        };
        match position {
            Some(i) => self.idps[i] = stored,
            None => self.idps.push(stored),
        }
        Ok(())
    }

    /// Removes the identity provider with exactly this `iss` and `aud`.
    pub fn delete_idp(
        &mut self,
        config: &Config,
        iss: Option<String>,
        aud: Option<String>,
    ) -> Result<(), AdminError> {
        if iss.is_none() && aud.is_none() {
            return Err(AdminError::Invalid(
                "name the identity provider by iss, aud, or both".to_owned(),
            ));
        }
        let label = idp_label(iss.as_deref(), aud.as_deref());
        if let Some(i) = self.idps.iter().position(|i| i.iss == iss && i.aud == aud) {
            self.idps.remove(i);
            return Ok(());
        }
        if config
            .idps
            .iter()
            .any(|i| i.issuer == iss && i.audience == aud)
        {
            return Err(read_only(&label));
        }
        Err(AdminError::NotFound(format!(
            "no identity provider {label}"
        )))
    }

    /// Adds or replaces the token provider of `request.service`.
    pub fn upsert_provider(
        &mut self,
        config: &Config,
        request: StoredProvider,
    ) -> Result<(), AdminError> {
        if !crate::config::valid_service(&request.service) {
            return Err(AdminError::Invalid(
                "service must match ^[a-zA-Z0-9_-]{1,128}$".to_owned(),
            ));
        }
        let position = self
            .token_providers
            .iter()
            .position(|p| p.service == request.service);
        if position.is_none() && config.provider(&request.service).is_some() {
            return Err(read_only(&format!("token provider {:?}", request.service)));
        }
        match position {
            Some(i) => self.token_providers[i] = request,
            None => self.token_providers.push(request),
        }
        Ok(())
    }

    /// Removes the token provider of `service`.
    pub fn delete_provider(&mut self, config: &Config, service: &str) -> Result<(), AdminError> {
        if let Some(i) = self
            .token_providers
            .iter()
            .position(|p| p.service == service)
        {
            self.token_providers.remove(i);
            return Ok(());
        }
        if config.provider(service).is_some() {
            return Err(read_only(&format!("token provider {service:?}")));
        }
        Err(AdminError::NotFound(format!(
            "no token provider {service:?}"
        )))
    }

    /// Makes an HS256 key with a random id and secret; returns (id, secret).
    pub fn create_key(
        &mut self,
        master: &Secret,
        name: String,
        scopes: Vec<String>,
        now: std::time::SystemTime,
    ) -> Result<(String, Secret), AdminError> {
        let rng = SystemRandom::new();
        let mut id_bytes = [0u8; 16];
        let mut secret_bytes = [0u8; 32];
        rng.fill(&mut id_bytes)
            .and_then(|()| rng.fill(&mut secret_bytes))
            .map_err(|_| AdminError::Storage("the system random source failed".to_owned()))?;
        let id = format!("sbk_{}", b64url(&id_bytes));
        let secret = format!("sbsec_{}", b64url(&secret_bytes));
        let sealed = seal(master, &key_aad(&id), secret.as_bytes())?;
        self.keys.push(StoredKey {
            id: id.clone(),
            name,
            scopes,
            created_at: humantime::format_rfc3339_seconds(now).to_string(),
            secret: sealed,
        });
        Ok((id, Secret::new(secret)))
    }

    /// Removes key `id`, unless a token provider signs with it.
    pub fn delete_key(&mut self, config: &Config, id: &str) -> Result<(), AdminError> {
        let users: Vec<&str> = config
            .token_providers
            .iter()
            .filter(|p| p.key.id() == id)
            .map(|p| p.service.as_str())
            .collect();
        let Some(i) = self.keys.iter().position(|k| k.id == id) else {
            return Err(if config.keys.iter().any(|k| k.id() == id) {
                read_only(&format!("key {id:?}"))
            } else {
                AdminError::NotFound(format!("no key {id:?}"))
            });
        };
        if !users.is_empty() {
            return Err(AdminError::Conflict(format!(
                "key {id:?} signs the tokens of {}; point them at another key first",
                users.join(", ")
            )));
        }
        self.keys.remove(i);
        Ok(())
    }

    /// Whether (`iss`, `aud`) names an identity provider of this state.
    pub fn has_idp(&self, iss: Option<&str>, aud: Option<&str>) -> bool {
        self.idps
            .iter()
            .any(|i| i.iss.as_deref() == iss && i.aud.as_deref() == aud)
    }

    /// Whether `service` is a token provider of this state.
    pub fn has_provider(&self, service: &str) -> bool {
        self.token_providers.iter().any(|p| p.service == service)
    }

    /// The key `id` of this state.
    pub fn key(&self, id: &str) -> Option<&StoredKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Removes the temp files that writes of `state_file` left when they were interrupted (a
/// kill or a crash between creating the temp file and renaming it over the state file):
/// regular files in its directory whose names are exactly baton's pattern
/// (`.baton-state.` and six letters or digits), nothing else. Call at start, before any
/// write: a temp file then belongs to no write in progress (one baton process owns a state
/// file). Returns how many were removed; one that cannot be removed is logged and left.
pub fn remove_stale_temp_files(state_file: &Path) -> std::io::Result<usize> {
    let dir = state_file.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // `file_type` does not follow symlinks: a link with a matching name is not ours.
        if !is_temp_file_name(name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(
                error = %e,
                path = %entry.path().display(),
                "cannot remove a stale temp file of the state file"
            ),
        }
    }
    Ok(removed)
}

/// Whether `name` is one of [`ApiState::save`]'s temp file names.
fn is_temp_file_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX).is_some_and(|random| {
        random.len() == TEMP_RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `POST /idps`'s body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdpRequest {
    /// `iss` of its tokens.
    pub iss: Option<String>,
    /// `aud` of its tokens.
    pub aud: Option<String>,
    /// Allowed algorithms.
    pub algs: Vec<String>,
    /// Where its public keys are.
    pub jwks_url: Option<String>,
    /// Its key, base64url.
    pub key: Option<String>,
    /// Claim mapping.
    pub mapping: Map<String, Value>,
    /// A CEL condition over the verified claims (validated like the file's).
    pub condition: Option<String>,
}

impl fmt::Debug for IdpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpRequest")
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("algs", &self.algs)
            .field("jwks_url", &self.jwks_url)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("condition", &self.condition)
            .finish_non_exhaustive()
    }
}

/// Refuses a `jwksUrl` that reaches one of baton's own listeners (proxy, forward-auth, admin): baton would trust
/// its own published keys (every token it mints would pass as this IdP's), or read the admin
/// API as a key set. An unparsable URL is left to config validation, which names it.
fn refuse_own_listener(jwks_url: &str, config: &Config) -> Result<(), AdminError> {
    let Ok(url) = url::Url::parse(jwks_url) else {
        return Ok(());
    };
    let listeners: Vec<(&str, std::net::SocketAddr)> = [
        ("proxy", config.proxy.listen),
        (
            "forward-auth",
            config.forward_auth.as_ref().map(|f| f.listen),
        ),
        ("admin", Some(config.admin.listen)),
    ]
    .into_iter()
    .filter_map(|(name, addr)| Some((name, addr?)))
    .collect();
    match own_listener(&url, &listeners) {
        Some((name, addr)) => Err(AdminError::Invalid(format!(
            "jwksUrl points at baton's own {name} listener ({addr}); an IdP's keys must come \
             from the IdP"
        ))),
        None => Ok(()),
    }
}

fn read_only(what: &str) -> AdminError {
    AdminError::Conflict(format!(
        "{what} comes from the config file and is read-only here; change it in the file"
    ))
}

/// How errors and logs name an identity provider.
pub fn idp_label(iss: Option<&str>, aud: Option<&str>) -> String {
    match (iss, aud) {
        (Some(iss), Some(aud)) => format!("idps[iss={iss}, aud={aud}]"),
        (Some(iss), None) => format!("idps[iss={iss}]"),
        (None, Some(aud)) => format!("idps[aud={aud}]"),
        (None, None) => "idps[]".to_owned(),
    }
}

fn idp_aad(iss: Option<&str>, aud: Option<&str>) -> Vec<u8> {
    // JSON keeps the two parts apart whatever characters they hold.
    serde_json::json!(["baton-state-v1", "idp", iss, aud])
        .to_string()
        .into_bytes()
}

fn key_aad(id: &str) -> Vec<u8> {
    serde_json::json!(["baton-state-v1", "key", id])
        .to_string()
        .into_bytes()
}

/// The master key's HKDF pseudo-random key; the sealing and MAC keys are expanded from it.
fn derived(master: &Secret) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"baton-state-v1").extract(master.expose())
}

/// The AES-256-GCM key that seals secrets.
fn aead_key(master: &Secret) -> Result<LessSafeKey, AdminError> {
    derived(master)
        .expand(&[b"seal"], &AES_256_GCM)
        .map(|okm| LessSafeKey::new(UnboundKey::from(okm)))
        .map_err(|_| AdminError::Storage("cannot derive the sealing key".to_owned()))
}

/// The HMAC-SHA256 key of the document's MAC.
fn mac_key(master: &Secret) -> hmac::Key {
    derived(master)
        .expand(&[b"mac"], hmac::HMAC_SHA256)
        .map(hmac::Key::from)
        // 32 bytes out of HKDF-SHA256 cannot fail (its limit is 255 × 32).
        .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, master.expose()))
}

fn seal(master: &Secret, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, AdminError> {
    let key = aead_key(master)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| AdminError::Storage("the system random source failed".to_owned()))?;
    let mut buffer = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buffer,
    )
    .map_err(|_| AdminError::Storage("sealing a secret failed".to_owned()))?;
    Ok(Sealed {
        nonce: b64url(&nonce),
        ciphertext: b64url(&buffer),
    })
}

fn unseal(master: &Secret, aad: &[u8], sealed: &Sealed) -> Result<Secret, AdminError> {
    let broken = || {
        AdminError::Storage(
            "a secret in the state file does not open with the master key (a different key, or \
             an edited file)"
                .to_owned(),
        )
    };
    let key = aead_key(master)?;
    let nonce: [u8; NONCE_LEN] = LENIENT_URL_SAFE
        .decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(broken)?;
    let mut buffer = LENIENT_URL_SAFE
        .decode(&sealed.ciphertext)
        .map_err(|_| broken())?;
    let plaintext = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buffer,
        )
        .map_err(|_| broken())?;
    Ok(Secret::new(plaintext.to_vec()))
}

fn secret_text(secret: Secret) -> Result<InlineSecret, AdminError> {
    String::from_utf8(secret.expose().to_vec())
        .map(InlineSecret)
        .map_err(|_| AdminError::Storage("a sealed secret is not text".to_owned()))
}

#[cfg(test)]
mod tests;
