//! Calls to methods the payload schema does not know: refused unless policy says to forward them.

use std::collections::HashSet;
use std::sync::Mutex;

use tonic::Status;

/// What happens to a call whose method the payload schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownMethods {
    /// Refused with `UNIMPLEMENTED`: the proxy cannot tell where its payloads are, so it
    /// could not encrypt them.
    #[default]
    Refuse,
    /// Forwarded byte for byte, payloads and all, and counted.
    Forward,
}

/// Services that carry no payloads and that clients and load balancers call whatever the
/// API version: health checks and server reflection.
const ALWAYS_FORWARDED: &[&str] = &["/grpc.health.v1.", "/grpc.reflection.v1alpha.", "/grpc.reflection.v1."];

/// Distinct unknown methods logged, at most: paths are the caller's choice, and a caller
/// making up a new one per call must not grow this set, nor the log, without bound.
const LOGGED_METHODS_LIMIT: usize = 1024;

/// The decision for one unknown method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownMethodAction {
    Forwarded,
    Refused,
}

impl UnknownMethodAction {
    pub fn label(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Refused => "refused",
        }
    }
}

/// Decides on calls to unknown methods and logs each such method once.
#[derive(Debug, Default)]
pub struct MethodPolicy {
    unknown: UnknownMethods,
    logged: Mutex<HashSet<String>>,
}

impl MethodPolicy {
    pub fn new(unknown: UnknownMethods) -> Self {
        Self {
            unknown,
            logged: Mutex::default(),
        }
    }

    /// What happens to a call to `path`, a method outside the payload schema built from
    /// `api` (which errors name).
    pub fn unknown_method(&self, path: &str, api: &str) -> Result<UnknownMethodAction, Status> {
        let action = if self.unknown == UnknownMethods::Forward
            || ALWAYS_FORWARDED.iter().any(|service| path.starts_with(service))
        {
            UnknownMethodAction::Forwarded
        } else {
            UnknownMethodAction::Refused
        };
        self.log_once(path, action);
        match action {
            UnknownMethodAction::Forwarded => Ok(action),
            UnknownMethodAction::Refused => Err(Status::unimplemented(format!(
                "{path} is not a method of the Temporal API this proxy knows ({api}), so it cannot \
                 tell which of its fields are payloads and will not send them unencrypted; use a \
                 proxy release built on a newer Temporal API, give it the newer API's descriptors \
                 with --descriptors, or forward such calls unencrypted with --unknown-methods forward"
            ))),
        }
    }

    fn log_once(&self, path: &str, action: UnknownMethodAction) {
        let mut logged = self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.contains(path) || logged.len() > LOGGED_METHODS_LIMIT {
            return;
        }
        if logged.len() == LOGGED_METHODS_LIMIT {
            tracing::warn!(
                limit = LOGGED_METHODS_LIMIT,
                "calls to unknown methods keep coming; further methods are counted but not logged"
            );
            logged.insert(String::new());
            return;
        }
        logged.insert(path.to_owned());
        match action {
            UnknownMethodAction::Refused => {
                tracing::warn!(method = path, "refused calls to a method outside the payload schema")
            }
            UnknownMethodAction::Forwarded => tracing::info!(
                method = path,
                "forwarding calls to a method outside the payload schema byte for byte"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW_METHOD: &str = "/temporal.api.workflowservice.v1.WorkflowService/NoSuchMethod";

    #[test]
    fn unknown_methods_are_refused_with_a_hint_except_health_and_reflection() {
        let policy = MethodPolicy::new(UnknownMethods::Refuse);
        let refused = policy.unknown_method(NEW_METHOD, "test API").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert!(refused.message().contains("--unknown-methods forward"), "{refused:?}");
        assert!(refused.message().contains("--descriptors") && refused.message().contains("test API"));
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(
                policy.unknown_method(path, "test API").unwrap(),
                UnknownMethodAction::Forwarded,
                "{path}"
            );
        }
        let forwarding = MethodPolicy::new(UnknownMethods::Forward);
        assert_eq!(
            forwarding.unknown_method(NEW_METHOD, "test API").unwrap(),
            UnknownMethodAction::Forwarded
        );
    }

    #[test]
    fn made_up_methods_cannot_grow_the_logged_set_without_bound() {
        let policy = MethodPolicy::new(UnknownMethods::Refuse);
        for n in 0..3 * LOGGED_METHODS_LIMIT {
            let _ = policy.unknown_method(&format!("/made.up.Service/Method{n}"), "test API");
        }
        assert_eq!(policy.logged.lock().unwrap().len(), LOGGED_METHODS_LIMIT + 1);
    }
}
