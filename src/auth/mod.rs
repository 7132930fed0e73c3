//! Who may see plaintext through the codec server: JWT authentication, then roles from
//! the token's claims or from Temporal Cloud.

pub mod claims_roles;
pub mod cloud_roles;
pub mod jwt;

use claims_roles::ClaimsRoles;
use cloud_roles::{CloudRoles, CloudRolesError};
use jwt::{JwtVerifier, TokenError};

/// Where a verified user's permissions come from.
pub enum RoleSource {
    Claims(ClaimsRoles),
    Cloud(Box<CloudRoles>),
}

/// The outcome for an authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// May see plaintext in the requested namespace.
    Decrypt,
    /// Authenticated, but payloads stay encrypted.
    Encrypted,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Roles(#[from] CloudRolesError),
}

pub struct Authenticator {
    verifier: JwtVerifier,
    roles: RoleSource,
}

impl Authenticator {
    pub fn new(verifier: JwtVerifier, roles: RoleSource) -> Self {
        Self { verifier, roles }
    }

    /// Verifies the caller's token and decides their access to `namespace`.
    pub async fn authorize(&self, headers: &http::HeaderMap, namespace: &str) -> Result<Access, AuthError> {
        let identity = self.verifier.verify_request(headers).await?;
        let allowed = match &self.roles {
            RoleSource::Claims(roles) => roles.may_decrypt(&identity.claims, namespace),
            RoleSource::Cloud(roles) => roles.may_decrypt(&identity.email, namespace).await?,
        };
        tracing::debug!(email = %identity.email, namespace, allowed, "codec server caller authorized");
        Ok(if allowed { Access::Decrypt } else { Access::Encrypted })
    }
}
