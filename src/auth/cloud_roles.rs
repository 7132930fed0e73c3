//! Authorization from Temporal Cloud: the user's account role and namespace permissions,
//! asked of the Cloud Ops API (`CloudService/GetUsers`) and cached.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use temporalio_protos::temporal::api::cloud::cloudservice::v1::GetUsersRequest;
use temporalio_protos::temporal::api::cloud::cloudservice::v1::cloud_service_client::CloudServiceClient;
use temporalio_protos::temporal::api::cloud::identity::v1::{AccountAccess, NamespaceAccess, User};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use zeroize::Zeroizing;

pub const DEFAULT_OPS_ADDRESS: &str = "saas-api.tmprl.cloud:443";
pub const DEFAULT_OPS_API_VERSION: &str = "2024-05-13-00";

#[derive(Debug, Clone)]
pub struct CloudRolesSettings {
    pub address: String,
    pub api_key: Arc<Zeroizing<String>>,
    pub api_version: String,
    /// Account roles that may see plaintext in every namespace.
    pub account_roles: HashSet<String>,
    /// Namespace permissions that may see plaintext in that namespace.
    pub namespace_permissions: HashSet<String>,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
}

/// What the Ops API says about one user; `None` when it does not know the email.
#[derive(Debug, Clone)]
struct UserAccess {
    account_role: String,
    namespace_permissions: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudRolesError {
    #[error("Cloud Ops API address {0:?} is not valid")]
    Address(String),
    #[error("the Cloud API key is not a valid header value")]
    ApiKey,
    #[error("Cloud Ops API call failed: {0}")]
    Call(String),
}

pub struct CloudRoles {
    settings: CloudRolesSettings,
    client: CloudServiceClient<Channel>,
    known: Cache<String, Arc<UserAccess>>,
    unknown: Cache<String, ()>,
}

impl CloudRoles {
    pub fn new(settings: CloudRolesSettings) -> Result<Self, CloudRolesError> {
        let address = &settings.address;
        let plaintext = address.starts_with("http://");
        let uri = if address.contains("://") {
            address.clone()
        } else {
            format!("https://{address}")
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|_| CloudRolesError::Address(address.clone()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if !plaintext {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|_| CloudRolesError::Address(address.clone()))?;
        }
        MetadataValue::try_from(format!("Bearer {}", settings.api_key.as_str()))
            .map_err(|_| CloudRolesError::ApiKey)?;
        let known = Cache::builder()
            .time_to_live(settings.cache_ttl)
            .max_capacity(10_000)
            .build();
        let unknown = Cache::builder()
            .time_to_live(settings.negative_cache_ttl)
            .max_capacity(10_000)
            .build();
        Ok(Self {
            client: CloudServiceClient::new(endpoint.connect_lazy()),
            settings,
            known,
            unknown,
        })
    }

    pub async fn may_decrypt(&self, email: &str, namespace: &str) -> Result<bool, CloudRolesError> {
        let Some(access) = self.user_access(email).await? else {
            return Ok(false);
        };
        Ok(self.settings.account_roles.contains(&access.account_role)
            || access
                .namespace_permissions
                .get(namespace)
                .is_some_and(|permission| self.settings.namespace_permissions.contains(permission)))
    }

    async fn user_access(&self, email: &str) -> Result<Option<Arc<UserAccess>>, CloudRolesError> {
        let email = email.to_ascii_lowercase();
        if let Some(access) = self.known.get(&email).await {
            return Ok(Some(access));
        }
        if self.unknown.get(&email).await.is_some() {
            return Ok(None);
        }
        let fetched = self
            .known
            .try_get_with(email.clone(), async {
                self.fetch(&email).await?.map(Arc::new).ok_or(FetchOutcome::Unknown)
            })
            .await;
        match fetched {
            Ok(access) => Ok(Some(access)),
            Err(outcome) => match &*outcome {
                FetchOutcome::Unknown => {
                    self.unknown.insert(email, ()).await;
                    Ok(None)
                }
                FetchOutcome::Failed(error) => Err(CloudRolesError::Call(error.clone())),
            },
        }
    }

    async fn fetch(&self, email: &str) -> Result<Option<UserAccess>, FetchOutcome> {
        let mut request = tonic::Request::new(GetUsersRequest {
            email: email.to_owned(),
            page_size: 10,
            ..Default::default()
        });
        let metadata = request.metadata_mut();
        let bearer = MetadataValue::try_from(format!("Bearer {}", self.settings.api_key.as_str()))
            .map_err(|_| FetchOutcome::Failed("invalid API key".into()))?;
        metadata.insert("authorization", bearer);
        if let Ok(version) = MetadataValue::try_from(self.settings.api_version.as_str()) {
            metadata.insert("temporal-cloud-api-version", version);
        }
        let users = self
            .client
            .clone()
            .get_users(request)
            .await
            .map_err(|status| FetchOutcome::Failed(format!("{:?}: {}", status.code(), status.message())))?
            .into_inner()
            .users;
        Ok(users
            .into_iter()
            .find(|user| {
                user.spec
                    .as_ref()
                    .is_some_and(|spec| spec.email.eq_ignore_ascii_case(email))
            })
            .map(user_access))
    }
}

enum FetchOutcome {
    Unknown,
    Failed(String),
}

fn user_access(user: User) -> UserAccess {
    let access = user.spec.and_then(|spec| spec.access).unwrap_or_default();
    UserAccess {
        account_role: access.account_access.map(account_role).unwrap_or_default(),
        namespace_permissions: access
            .namespace_accesses
            .into_iter()
            .map(|(namespace, permission)| (namespace, namespace_permission(permission)))
            .collect(),
    }
}

/// `ROLE_OWNER` → `owner`; older API versions give the name as a string.
#[allow(deprecated, reason = "API versions before v0.3.0 send only the string form")]
fn account_role(access: AccountAccess) -> String {
    match access.role() {
        temporalio_protos::temporal::api::cloud::identity::v1::account_access::Role::Unspecified => {
            access.role_deprecated.to_ascii_lowercase()
        }
        role => role.as_str_name().trim_start_matches("ROLE_").to_ascii_lowercase(),
    }
}

#[allow(deprecated, reason = "API versions before v0.3.0 send only the string form")]
fn namespace_permission(access: NamespaceAccess) -> String {
    match access.permission() {
        temporalio_protos::temporal::api::cloud::identity::v1::namespace_access::Permission::Unspecified => {
            access.permission_deprecated.to_ascii_lowercase()
        }
        permission => permission
            .as_str_name()
            .trim_start_matches("PERMISSION_")
            .to_ascii_lowercase(),
    }
}
