//! Authorization from the token itself: Temporal's default `permissions` claim.

use std::collections::HashSet;

use serde_json::Value;

/// The namespace whose roles apply to every namespace in Temporal's default authorizer.
const SYSTEM_NAMESPACE: &str = "temporal-system";

#[derive(Debug, Clone)]
pub struct ClaimsRoles {
    /// Claim holding `"<namespace>:<role>"` entries.
    pub claim: String,
    /// Roles allowed to see plaintext.
    pub roles: HashSet<String>,
}

impl ClaimsRoles {
    pub fn may_decrypt(&self, claims: &Value, namespace: &str) -> bool {
        let Some(entries) = claims.get(&self.claim).and_then(Value::as_array) else {
            return false;
        };
        entries.iter().filter_map(Value::as_str).any(|entry| {
            entry.rsplit_once(':').is_some_and(|(entry_namespace, role)| {
                (entry_namespace == namespace || entry_namespace == SYSTEM_NAMESPACE) && self.roles.contains(role)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grants_by_namespace_role_and_system_role() {
        let roles = ClaimsRoles {
            claim: "permissions".into(),
            roles: ["read", "write", "admin"].map(String::from).into(),
        };
        let claims = json!({"permissions": ["orders:read", "billing:worker"]});
        assert!(roles.may_decrypt(&claims, "orders"));
        assert!(!roles.may_decrypt(&claims, "billing"));
        assert!(!roles.may_decrypt(&claims, "payments"));
        assert!(roles.may_decrypt(&json!({"permissions": ["temporal-system:admin"]}), "payments"));
        assert!(!roles.may_decrypt(&json!({"permissions": "orders:read"}), "orders"));
        assert!(!roles.may_decrypt(&json!({}), "orders"));
    }
}
