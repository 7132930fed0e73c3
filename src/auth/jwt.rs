//! Verifies `Authorization: Bearer` JWTs against a JWKS, with pinned asymmetric algorithms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::future::Cache;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

/// Temporal Cloud's signing keys.
pub const DEFAULT_JWKS_URL: &str = "https://login.tmprl.cloud/.well-known/jwks.json";
/// Audiences of Temporal Cloud's UI tokens.
pub const DEFAULT_AUDIENCES: &[&str] = &[
    "https://saas-api.tmprl.cloud",
    "https://prod-tmprl.us.auth0.com/userinfo",
];
/// The claim holding the user's email in Temporal Cloud's tokens.
pub const DEFAULT_EMAIL_CLAIM: &str = "https://saas-api.tmprl.cloud/user/email";

/// Only signatures made with a private key count: no `none`, no HMAC, so a public key can
/// never be used as a shared secret.
const ALLOWED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Least time between two JWKS fetches caused by unknown key ids, so forged `kid`s cannot
/// turn the proxy into a load generator against the identity provider.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long fetched keys are trusted before they are fetched again.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Leeway for `exp` and `nbf` alike: clocks of the identity provider and the pod differ.
pub const CLOCK_SKEW_SECONDS: u64 = 60;
/// Longest token accepted. Tokens with many group claims reach a few KiB; anything past
/// this is refused before it is parsed, so an attacker cannot make every request cost a
/// megabyte of base64 and JSON decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long a verified token is taken on trust, at most; never past its own `exp`. Keys
/// themselves are trusted for up to [`JWKS_MAX_AGE`], so this adds nothing to how long a
/// retired key keeps working.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Verified tokens remembered at once: far more callers than one pod serves in a minute.
const VERIFIED_TOKEN_CAPACITY: u64 = 2048;

/// The header the Temporal Web UI sends the user's ID token in, beside the access token in
/// `Authorization`, when it logs in with OIDC and passes tokens to the codec server.
pub static AUTHORIZATION_EXTRAS: HeaderName = HeaderName::from_static("authorization-extras");

/// Which request headers a caller's JWT is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TokenSource {
    /// `Authorization: Bearer <JWT>` only.
    Authorization,
    /// `Authorization-Extras: <JWT>` only: the ID token the Web UI sends.
    AuthorizationExtras,
    /// A JWT that verifies in `Authorization` wins; otherwise the one in `Authorization-Extras`,
    /// verified the same way.
    #[default]
    Either,
}

impl TokenSource {
    /// What a caller must send, for error messages.
    fn expected(self) -> &'static str {
        match self {
            Self::Authorization => "Authorization: Bearer <JWT>",
            Self::AuthorizationExtras => "Authorization-Extras: <JWT>",
            Self::Either => "Authorization: Bearer <JWT> or Authorization-Extras: <JWT>",
        }
    }
}

/// The token of an `Authorization: Bearer` value.
fn bearer_token(value: Option<&str>) -> Option<&str> {
    value
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// The token of an `Authorization-Extras` value: the bare JWT, or `Bearer <JWT>`.
fn extras_token(value: Option<&str>) -> Option<&str> {
    value
        .map(|value| bearer_token(Some(value)).unwrap_or(value.trim()))
        .filter(|token| !token.is_empty())
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub jwks_url: String,
    pub audiences: Vec<String>,
    pub issuer: Option<String>,
    pub email_claim: String,
    /// Least time between two JWKS fetches for unknown key ids.
    pub refetch_interval: Duration,
    /// Which headers carry the token.
    pub token_source: TokenSource,
}

/// Why a token was refused. The message is safe to return to the caller.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token: send {0}")]
    Missing(&'static str),
    #[error("token is not a valid JWT: {0}")]
    Malformed(String),
    #[error("token algorithm {0} is not accepted; tokens must be signed with an asymmetric key")]
    Algorithm(String),
    #[error("token is {0} bytes long; at most {MAX_TOKEN_BYTES} are accepted")]
    TooLarge(usize),
    #[error("token header marks {0:?} as critical, and this verifier implements no JWS extensions")]
    CriticalExtension(Vec<String>),
    #[error("token has no key id (kid)")]
    NoKeyId,
    #[error("token key id {0:?} is not among the identity provider's keys")]
    UnknownKey(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token has no {0:?} claim")]
    NoEmail(String),
    #[error("the identity provider's keys could not be fetched: {0}")]
    Jwks(String),
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub email: String,
    pub claims: Value,
}

/// A token that passed verification, and until when (Unix seconds) that holds.
#[derive(Clone)]
struct VerifiedToken {
    identity: Arc<Identity>,
    expires_at: u64,
}

struct CachedKeys {
    keys: JwkSet,
    fetched_at: Instant,
}

pub struct JwtVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    keys: RwLock<Option<CachedKeys>>,
    last_fetch: Mutex<Option<Instant>>,
    /// Each caller sends the same token with every request (the Web UI one per page of
    /// events), and checking its signature costs more than decoding a payload.
    verified: Cache<String, VerifiedToken>,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
            verified: Cache::builder()
                .max_capacity(VERIFIED_TOKEN_CAPACITY)
                .time_to_live(VERIFIED_TOKEN_TTL)
                .build(),
        }
    }

    /// Verifies the caller's token from the request headers that [`JwtSettings::token_source`]
    /// names.
    pub async fn verify_request(&self, headers: &HeaderMap) -> Result<Arc<Identity>, TokenError> {
        let header = |name: &HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
        let authorization = || bearer_token(header(&AUTHORIZATION));
        let extras = || extras_token(header(&AUTHORIZATION_EXTRAS));
        let verified = match self.settings.token_source {
            TokenSource::Authorization => match authorization() {
                Some(token) => self.verify_unlogged(token).await,
                None => Err(TokenError::Missing(TokenSource::Authorization.expected())),
            },
            TokenSource::AuthorizationExtras => match extras() {
                Some(token) => self.verify_unlogged(token).await,
                None => Err(TokenError::Missing(TokenSource::AuthorizationExtras.expected())),
            },
            TokenSource::Either => match (authorization(), extras()) {
                (None, None) => Err(TokenError::Missing(TokenSource::Either.expected())),
                (Some(token), None) | (None, Some(token)) => self.verify_unlogged(token).await,
                // An access token the proxy cannot verify (opaque, or for another audience)
                // beside the ID token the Web UI sends with it: the ID token is checked in
                // full, exactly as the access token was.
                (Some(access), Some(id)) => match self.verify_unlogged(access).await {
                    Ok(identity) => Ok(identity),
                    Err(_) => self.verify_unlogged(id).await,
                },
            },
        };
        if let Err(error) = &verified {
            tracing::info!(reason = %error, "refused a bearer token");
        }
        verified
    }

    /// Verifies `token`, or finds it verified within the last minute and not yet expired.
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        let verified = self.verify_unlogged(token).await;
        if let Err(error) = &verified {
            // The reason only: the token itself is a credential, even when it is refused.
            tracing::info!(reason = %error, "refused a bearer token");
        }
        verified
    }

    async fn verify_unlogged(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge(token.len()));
        }
        if let Some(verified) = self.verified.get(token).await {
            if jsonwebtoken::get_current_timestamp() < verified.expires_at {
                return Ok(verified.identity);
            }
            self.verified.invalidate(token).await;
        }
        let identity = Arc::new(self.check(token).await?);
        // A fractional `exp` is valid but rare; such a token is simply checked every time.
        if let Some(expires_at) = identity.claims.get("exp").and_then(Value::as_u64) {
            let verified = VerifiedToken {
                identity: Arc::clone(&identity),
                expires_at,
            };
            self.verified.insert(token.to_owned(), verified).await;
        }
        Ok(identity)
    }

    /// Checks the token's signature and claims.
    async fn check(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| TokenError::Malformed(error.to_string()))?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        // RFC 7515 §4.1.11: a recipient that does not understand every extension `crit`
        // names must refuse the token, and this verifier understands none.
        if let Some(critical) = header.crit {
            return Err(TokenError::CriticalExtension(critical));
        }
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let key = self.decoding_key(&kid, header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&self.settings.audiences);
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_SKEW_SECONDS;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|error| TokenError::Invalid(rejection_reason(&error)))?
            .claims;
        let email = claims
            .get(&self.settings.email_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::NoEmail(self.settings.email_claim.clone()))?
            .to_owned();
        Ok(Identity { email, claims })
    }

    async fn decoding_key(&self, kid: &str, algorithm: Algorithm) -> Result<DecodingKey, TokenError> {
        let fresh = |cached: &CachedKeys| cached.fetched_at.elapsed() < JWKS_MAX_AGE;
        if let Some(cached) = self.keys.read().await.as_ref().filter(|c| fresh(c))
            && let Some(jwk) = cached.keys.find(kid)
        {
            return key_for(jwk, algorithm);
        }
        self.refetch().await?;
        let keys = self.keys.read().await;
        let jwk = keys
            .as_ref()
            .and_then(|cached| cached.keys.find(kid))
            .ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))?;
        key_for(jwk, algorithm)
    }

    /// Fetches the JWKS unless it was fetched within the refetch interval.
    async fn refetch(&self) -> Result<(), TokenError> {
        let mut last_fetch = self.last_fetch.lock().await;
        let have_keys = self.keys.read().await.is_some();
        if have_keys && last_fetch.is_some_and(|at| at.elapsed() < self.settings.refetch_interval) {
            return Ok(());
        }
        *last_fetch = Some(Instant::now());
        let keys: JwkSet = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| TokenError::Jwks(error.to_string()))?
            .json()
            .await
            .map_err(|error| TokenError::Jwks(format!("not a JWKS document: {error}")))?;
        tracing::debug!(url = %self.settings.jwks_url, keys = keys.keys.len(), "fetched JWKS");
        *self.keys.write().await = Some(CachedKeys {
            keys,
            fetched_at: Instant::now(),
        });
        Ok(())
    }
}

/// Why the signature or claims were refused, in words an operator reading a log understands.
fn rejection_reason(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => "the signature does not verify".to_owned(),
        ErrorKind::ExpiredSignature => "the token has expired (exp)".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf is in the future)".to_owned(),
        ErrorKind::InvalidAudience => "the audience (aud) is not an accepted one".to_owned(),
        ErrorKind::InvalidIssuer => "the issuer (iss) is not the accepted one".to_owned(),
        _ => error.to_string(),
    }
}

/// The key for one JWK, refusing a JWK whose declared algorithm differs from the token's.
fn key_for(jwk: &jsonwebtoken::jwk::Jwk, algorithm: Algorithm) -> Result<DecodingKey, TokenError> {
    if let Some(declared) = jwk.common.key_algorithm {
        let declared = format!("{declared:?}");
        if declared != format!("{algorithm:?}") {
            return Err(TokenError::Algorithm(format!(
                "{algorithm:?} (the key is for {declared})"
            )));
        }
    }
    DecodingKey::from_jwk(jwk).map_err(|error| TokenError::Invalid(format!("unusable key: {error}")))
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, extras_token};

    #[test]
    fn authorization_needs_the_bearer_scheme_and_extras_takes_the_bare_token_or_a_bearer_one() {
        assert_eq!(bearer_token(Some("Bearer a.b.c")), Some("a.b.c"));
        assert_eq!(bearer_token(Some("bearer a.b.c ")), Some("a.b.c"));
        assert_eq!(bearer_token(Some("a.b.c")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(extras_token(Some("a.b.c")), Some("a.b.c"));
        assert_eq!(extras_token(Some("Bearer a.b.c")), Some("a.b.c"));
        assert_eq!(extras_token(Some("  ")), None);
        assert_eq!(extras_token(None), None);
    }
}
