//! `Status` bodies shaped byte for byte like kube-apiserver's (field order `kind, apiVersion,
//! metadata, status, message, reason, details, code`; details `name, group, kind, uid, causes,
//! retryAfterSeconds`), and the builders for each failure the fake answers.
//!
//! Owns: error wording. Must not decide when an error happens.

use serde::Serialize;
use serde_json::Value;

use super::store::Res;

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusMeta {
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<Box<str>>,
}

/// A `meta/v1 Status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub kind: &'static str,
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub metadata: StatusMeta,
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<Details>>,
    /// HTTP status; absent in success Statuses (they carry none in the body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

impl Status {
    pub fn failure(
        code: u16,
        reason: &'static str,
        message: String,
        details: Option<Details>,
    ) -> Status {
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: StatusMeta {
                continue_token: None,
            },
            status: "Failure",
            message,
            reason,
            details: details.map(Box::new),
            code: Some(code),
        }
    }

    /// The HTTP status to answer with.
    pub fn http_code(&self) -> u16 {
        self.code.unwrap_or(200)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn details(res: Res, name: &str) -> Option<Details> {
    Some(Details {
        name: name.to_string(),
        group: res.group().to_string(),
        kind: res.plural().to_string(),
        ..Details::default()
    })
}

/// `DELETE` of a node or lease: `Status{status: Success, details{name, group, kind, uid}}`.
pub fn success_deleted(res: Res, name: &str, uid: &str) -> Status {
    Status {
        kind: "Status",
        api_version: "v1",
        metadata: StatusMeta {
            continue_token: None,
        },
        status: "Success",
        message: String::new(),
        reason: "",
        details: Some(Box::new(Details {
            name: name.to_string(),
            group: res.group().to_string(),
            kind: res.plural().to_string(),
            uid: uid.to_string(),
            ..Details::default()
        })),
        code: None,
    }
}

pub fn not_found(res: Res, name: &str) -> Status {
    Status::failure(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", res.qualified()),
        details(res, name),
    )
}

pub fn already_exists(res: Res, name: &str) -> Status {
    Status::failure(
        409,
        "AlreadyExists",
        format!("{} \"{name}\" already exists", res.qualified()),
        details(res, name),
    )
}

/// Optimistic-concurrency conflict (stale resourceVersion in an update).
pub fn conflict_modified(res: Res, name: &str) -> Status {
    Status::failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            res.qualified()
        ),
        details(res, name),
    )
}

/// Delete precondition mismatch; the real server names the Kind here, not the resource.
pub fn conflict_precondition(res: Res, name: &str, what: String) -> Status {
    Status::failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": {what}",
            res.kind()
        ),
        Some(Details {
            name: name.to_string(),
            kind: res.kind().to_string(),
            ..Details::default()
        }),
    )
}

/// What an authorizer (RBAC or Node) said no to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub user: String,
    pub verb: String,
    pub res: Res,
    pub subresource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub reason: Option<String>,
}

/// `pods "p" is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace "n": reason`
pub fn forbidden_authz(d: &Denied) -> Status {
    let resource = if d.subresource.is_empty() {
        d.res.plural().to_string()
    } else {
        format!("{}/{}", d.res.plural(), d.subresource)
    };
    let scope = match &d.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let subject = match &d.name {
        Some(name) => format!("{} \"{name}\"", d.res.qualified()),
        None => d.res.qualified(),
    };
    let mut message = format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        d.user,
        d.verb,
        d.res.group()
    );
    if let Some(reason) = &d.reason {
        message.push_str(": ");
        message.push_str(reason);
    }
    Status::failure(
        403,
        "Forbidden",
        message,
        Some(Details {
            name: d.name.clone().unwrap_or_default(),
            group: d.res.group().to_string(),
            kind: d.res.plural().to_string(),
            ..Details::default()
        }),
    )
}

/// An admission (NodeRestriction) refusal: `nodes "vk-node" is forbidden: <why>`.
pub fn forbidden_admission(res: Res, name: &str, why: &str) -> Status {
    Status::failure(
        403,
        "Forbidden",
        format!("{} \"{name}\" is forbidden: {why}", res.qualified()),
        details(res, name),
    )
}

/// A validation failure: `Kind.group "name" is invalid: field: Invalid value: ...`.
pub fn invalid(
    kind: &str,
    group: &str,
    name: &str,
    field: &str,
    cause_reason: &str,
    detail: String,
) -> Status {
    let qualified_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    Status::failure(
        422,
        "Invalid",
        format!("{qualified_kind} \"{name}\" is invalid: {field}: {detail}"),
        Some(Details {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes: vec![Cause {
                reason: cause_reason.to_string(),
                message: detail,
                field: field.to_string(),
            }],
            ..Details::default()
        }),
    )
}

pub fn bad_request(message: String) -> Status {
    Status::failure(400, "BadRequest", message, None)
}

pub fn unsupported_media_type() -> Status {
    Status::failure(
        415,
        "UnsupportedMediaType",
        "415: Unsupported Media Type".to_string(),
        Some(Details::default()),
    )
}

pub fn method_not_allowed() -> Status {
    Status::failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource".to_string(),
        Some(Details::default()),
    )
}

pub fn path_not_found() -> Status {
    Status::failure(
        404,
        "NotFound",
        "the server could not find the requested resource".to_string(),
        Some(Details::default()),
    )
}

pub fn internal_error(message: &str) -> Status {
    Status::failure(
        500,
        "InternalError",
        format!("Internal error occurred: {message}"),
        Some(Details {
            causes: vec![Cause {
                reason: String::new(),
                message: message.to_string(),
                field: String::new(),
            }],
            ..Details::default()
        }),
    )
}

pub fn watch_expired(rv: u64, oldest: u64) -> Status {
    Status::failure(
        410,
        "Expired",
        format!("too old resource version: {rv} ({oldest})"),
        None,
    )
}

pub fn list_expired() -> Status {
    Status::failure(
        410,
        "Expired",
        "The resourceVersion for the provided list is too old.".to_string(),
        None,
    )
}

pub fn continue_expired(fresh_token: String) -> Status {
    let mut s = Status::failure(
        410,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".to_string(),
        None,
    );
    s.metadata.continue_token = Some(fresh_token.into_boxed_str());
    s
}

pub fn too_large_rv(rv: u64, current: u64) -> Status {
    Status::failure(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {rv}, current: {current}"),
        Some(Details {
            causes: vec![Cause {
                reason: "ResourceVersionTooLarge".to_string(),
                message: "Too large resource version".to_string(),
                field: String::new(),
            }],
            retry_after_seconds: Some(1),
            ..Details::default()
        }),
    )
}

/// `resourceVersionMatch` on a watch (03e).
pub fn watch_rv_match_forbidden() -> Status {
    let detail = "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided";
    Status::failure(
        422,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: {detail}"),
        Some(Details {
            group: "meta.k8s.io".to_string(),
            kind: "ListOptions".to_string(),
            causes: vec![Cause {
                reason: "FieldValueForbidden".to_string(),
                message: detail.to_string(),
                field: "resourceVersionMatch".to_string(),
            }],
            ..Details::default()
        }),
    )
}

/// An apply patch without `fieldManager` (04l).
pub fn apply_needs_field_manager() -> Status {
    let detail = "Required value: is required for apply patch";
    Status::failure(
        422,
        "Invalid",
        format!("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: {detail}"),
        Some(Details {
            group: "meta.k8s.io".to_string(),
            kind: "PatchOptions".to_string(),
            causes: vec![Cause {
                reason: "FieldValueRequired".to_string(),
                message: detail.to_string(),
                field: "fieldManager".to_string(),
            }],
            ..Details::default()
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_the_fixture_bytes_when_pretty_printed_by_go() {
        let s = not_found(Res::Pods, "does-not-exist");
        assert_eq!(
            s.to_json(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"does-not-exist\" not found","reason":"NotFound","details":{"name":"does-not-exist","kind":"pods"},"code":404}"#
        );
    }

    #[test]
    fn forbidden_cluster_scope_without_name() {
        let s = forbidden_authz(&Denied {
            user: "system:anonymous".into(),
            verb: "list".into(),
            res: Res::Pods,
            subresource: String::new(),
            namespace: None,
            name: None,
            reason: None,
        });
        assert_eq!(
            s.message,
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
        );
    }
}
