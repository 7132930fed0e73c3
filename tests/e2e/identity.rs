//! Stand-ins for what cannot run here, speaking the real protocols: an identity provider's
//! JWKS endpoint with tokens it signs, and Temporal Cloud's Ops API (`CloudService/GetUsers`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::Message as _;
use serde_json::{Value, json};
use temporal_codec_proxy::proxy::grpc_frame::encode_frame;
use temporalio_protos::temporal::api::cloud::cloudservice::v1::{GetUsersRequest, GetUsersResponse};
use temporalio_protos::temporal::api::cloud::identity::v1::{
    Access, AccountAccess, NamespaceAccess, User, UserSpec, account_access, namespace_access,
};
use tokio::net::TcpListener;

pub const AUDIENCE: &str = "https://saas-api.tmprl.cloud";
pub const ISSUER: &str = "https://issuer.example.test/";
pub const EMAIL_CLAIM: &str = "https://saas-api.tmprl.cloud/user/email";

/// An identity provider: signs tokens with an EC P-256 key and serves its JWKS over HTTP.
pub struct IdentityProvider {
    pub jwks_url: String,
    pub key_id: String,
    pkcs8: Vec<u8>,
    public_jwk: Value,
    /// The JWKS document it serves.
    jwks: Arc<Mutex<Bytes>>,
    pub jwks_fetches: Arc<AtomicUsize>,
}

impl IdentityProvider {
    pub async fn start() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
        // An uncompressed P-256 point: 0x04 ‖ x ‖ y.
        let point = pair.public_key().as_ref();
        let key_id = crate::support::unique("kid");
        let public_jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": key_id,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let jwks = Arc::new(Mutex::new(Bytes::from(json!({"keys": [public_jwk]}).to_string())));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let address = serve_http1({
            let jwks_fetches = Arc::clone(&jwks_fetches);
            let jwks = Arc::clone(&jwks);
            move |_| {
                jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let document = jwks.lock().unwrap().clone();
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(document))
                    .unwrap()
            }
        })
        .await;
        Self {
            jwks_url: format!("http://{address}/.well-known/jwks.json"),
            key_id,
            pkcs8,
            public_jwk,
            jwks,
            jwks_fetches,
        }
    }

    /// Adds `jwk` to the JWKS, as a provider does when it rolls in a new signing key.
    pub fn publish(&self, jwk: &Value) {
        let mut document: Value = serde_json::from_slice(&self.jwks.lock().unwrap()).unwrap();
        document["keys"].as_array_mut().unwrap().push(jwk.clone());
        *self.jwks.lock().unwrap() = Bytes::from(document.to_string());
    }

    /// Takes the signing key out of the JWKS, as a provider does when it retires a key.
    pub fn retire_key(&self) {
        *self.jwks.lock().unwrap() = Bytes::from(json!({"keys": []}).to_string());
    }

    /// Claims of a valid token for `email`, to be adjusted by the caller.
    pub fn claims(&self, email: &str) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "sub": email, "aud": [AUDIENCE], "iss": ISSUER, "iat": now, "exp": now + 600,
            EMAIL_CLAIM: email,
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(claims, &self.key_id)
    }

    pub fn sign_with_kid(&self, claims: &Value, kid: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }

    /// The classic key-confusion forgery: HMAC-SHA256 keyed with the public key.
    pub fn forge_hmac_with_public_key(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.key_id.clone());
        let secret = self.public_jwk.to_string();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    /// An unsigned token (`alg: none`).
    pub fn unsigned(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.key_id});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }
}

async fn serve_http1<F>(respond: F) -> SocketAddr
where
    F: Fn(http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let respond = respond.clone();
                    async move { Ok::<_, Infallible>(respond(request)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

pub const OPS_API_KEY: &str = "ops-api-key-for-tests";

/// Temporal Cloud's Ops API, answering `GetUsers` from a fixed directory of users.
pub struct OpsApi {
    pub address: SocketAddr,
    pub calls: Arc<AtomicUsize>,
}

impl OpsApi {
    pub async fn start(users: Vec<User>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let directory: Arc<HashMap<String, User>> = Arc::new(
            users
                .into_iter()
                .map(|user| (user.spec.as_ref().unwrap().email.clone(), user))
                .collect(),
        );
        let counter = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let directory = Arc::clone(&directory);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let directory = Arc::clone(&directory);
                        let counter = Arc::clone(&counter);
                        async move { Ok::<_, Infallible>(get_users(request, &directory, &counter).await) }
                    });
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { address, calls }
    }
}

async fn get_users(
    request: http::Request<hyper::body::Incoming>,
    directory: &HashMap<String, User>,
    calls: &AtomicUsize,
) -> http::Response<tonic::body::Body> {
    calls.fetch_add(1, Ordering::SeqCst);
    let trailers_only = |code: tonic::Code, message: &str| tonic::Status::new(code, message).into_http();
    if request.uri().path() != "/temporal.api.cloud.cloudservice.v1.CloudService/GetUsers" {
        return trailers_only(tonic::Code::Unimplemented, "only GetUsers is served");
    }
    let authorized =
        request.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {OPS_API_KEY}"));
    if !authorized || !request.headers().contains_key("temporal-cloud-api-version") {
        return trailers_only(tonic::Code::Unauthenticated, "API key and API version required");
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let query = GetUsersRequest::decode(&body[5..]).unwrap();
    let users = directory.get(&query.email).cloned().into_iter().collect();
    let response = GetUsersResponse {
        users,
        next_page_token: String::new(),
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let body = Full::new(encode_frame(&response.encode_to_vec())).with_trailers(async move { Some(Ok(trailers)) });
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(body))
        .unwrap()
}

/// A Cloud user with an account role and per-namespace permissions.
pub fn cloud_user(
    email: &str,
    role: account_access::Role,
    namespaces: &[(&str, namespace_access::Permission)],
) -> User {
    let mut account = AccountAccess::default();
    account.set_role(role);
    User {
        id: crate::support::unique("user"),
        spec: Some(UserSpec {
            email: email.to_owned(),
            access: Some(Access {
                account_access: Some(account),
                namespace_accesses: namespaces
                    .iter()
                    .map(|(namespace, permission)| {
                        let mut access = NamespaceAccess::default();
                        access.set_permission(*permission);
                        (namespace.to_string(), access)
                    })
                    .collect(),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// An RS256 signing key, for the attacks that only RSA allows (HMAC keyed with the modulus).
pub struct RsaSigner {
    pub kid: String,
    pkcs1: Vec<u8>,
    /// The public key as PEM (`BEGIN PUBLIC KEY`), as a JWKS consumer might hold it.
    pub public_pem: String,
    pub jwk: Value,
}

impl RsaSigner {
    pub fn generate(kid: &str) -> Self {
        use aws_lc_rs::encoding::AsDer as _;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING (RSAPrivateKey) }
        let (_, info, _) = der_element(pkcs8.as_ref());
        let (_, _, rest) = der_element(info);
        let (_, _, rest) = der_element(rest);
        let (_, pkcs1, _) = der_element(rest);
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let public = pair.public_key();
        let (_, sequence, _) = der_element(public.as_ref());
        let (_, modulus, rest) = der_element(sequence);
        let (_, exponent, _) = der_element(rest);
        let unsigned = |integer: &[u8]| integer.strip_prefix(&[0]).unwrap_or(integer).to_vec();
        let spki = public.as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        Self {
            kid: kid.to_owned(),
            pkcs1: pkcs1.to_vec(),
            public_pem: format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                lines.join("\n")
            ),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(unsigned(modulus)),
                "e": URL_SAFE_NO_PAD.encode(unsigned(exponent)),
            }),
        }
    }

    /// A token with `header` exactly as given, RS256-signed with this key.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = EncodingKey::from_rsa_der(&self.pkcs1);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
        format!("{message}.{signature}")
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}), claims)
    }
}

/// A token with `header` exactly as given, HMAC-SHA256-signed with `secret`.
pub fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

/// One DER element of `input`: its tag, its contents and what follows it.
fn der_element(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first_length) = (input[0], input[1]);
    let (length, header) = if first_length < 0x80 {
        (usize::from(first_length), 2)
    } else {
        let octets = usize::from(first_length & 0x7f);
        let length = input[2..2 + octets]
            .iter()
            .fold(0, |length, &byte| length << 8 | usize::from(byte));
        (length, 2 + octets)
    };
    (tag, &input[header..header + length], &input[header + length..])
}
