//! The fake's TokenReview and SubjectAccessReview tables.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Who a token authenticates as, and for which audiences it was issued.
#[derive(Clone, Debug, Default)]
pub struct FakeUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    /// The token's `aud`. Empty: the API server's default audiences.
    pub audiences: Vec<String>,
}

impl FakeUser {
    /// A ServiceAccount user `system:serviceaccount:<ns>:<name>` with the groups Kubernetes gives it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: format!("fake-sa-uid-{namespace}-{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            extra: BTreeMap::new(),
            audiences: Vec::new(),
        }
    }

    pub fn with_audiences(mut self, audiences: &[&str]) -> Self {
        self.audiences = audiences.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn with_extra(mut self, key: &str, values: &[&str]) -> Self {
        self.extra
            .insert(key.into(), values.iter().map(|v| v.to_string()).collect());
        self
    }
}

/// An allow rule: a subject (user or group) may do `verb` on `group`/`resource`[/`subresource`], optionally only in
/// one namespace and on one name. `"*"` in verb, group, resource or subresource matches anything.
#[derive(Clone, Debug)]
pub struct FakeRule {
    pub user: Option<String>,
    pub group_subject: Option<String>,
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    /// `""`: the main resource only.
    pub subresource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl FakeRule {
    /// `user` may `verb` `api_group`/`resource` (main resource, any namespace and name until narrowed).
    pub fn user(user: &str, verb: &str, api_group: &str, resource: &str) -> Self {
        Self {
            user: Some(user.into()),
            group_subject: None,
            verb: verb.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: None,
            name: None,
        }
    }

    /// Members of the group `group` may `verb` `api_group`/`resource`.
    pub fn group(group: &str, verb: &str, api_group: &str, resource: &str) -> Self {
        Self {
            user: None,
            group_subject: Some(group.into()),
            ..Self::user("", verb, api_group, resource)
        }
    }

    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = subresource.into();
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    fn matches(&self, spec: &Value) -> bool {
        let attrs = &spec["resourceAttributes"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let star = |rule: &str, got: &str| rule == "*" || rule == got;
        let subject = match (&self.user, &self.group_subject) {
            (Some(u), _) => s(&spec["user"]) == *u,
            (None, Some(g)) => spec["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().any(|x| x.as_str() == Some(g))),
            (None, None) => false,
        };
        subject
            && star(&self.verb, &s(&attrs["verb"]))
            && star(&self.api_group, &s(&attrs["group"]))
            && star(&self.resource, &s(&attrs["resource"]))
            && star(&self.subresource, &s(&attrs["subresource"]))
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| *n == s(&attrs["namespace"]))
            && self.name.as_ref().is_none_or(|n| *n == s(&attrs["name"]))
    }
}

#[derive(Default)]
pub(crate) struct Tables {
    pub tokens: BTreeMap<String, FakeUser>,
    pub default_audiences: Option<Vec<String>>,
    pub rules: Vec<FakeRule>,
    /// Review specs received, with the token of a TokenReview replaced by `<redacted>`.
    pub received: Vec<Value>,
}

pub(crate) const FAKE_DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

impl Tables {
    /// The `status` of a TokenReview for `spec`.
    pub fn token_review(&mut self, spec: &Value) -> Value {
        let mut logged = spec.clone();
        logged["token"] = json!("<redacted>");
        logged["kind"] = json!("TokenReview");
        self.received.push(logged);
        let defaults = self
            .default_audiences
            .clone()
            .unwrap_or_else(|| vec![FAKE_DEFAULT_AUDIENCE.to_owned()]);
        let requested: Vec<String> = spec["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| defaults.clone());
        let token = spec["token"].as_str().unwrap_or_default();
        let Some(user) = self.tokens.get(token) else {
            return json!({"authenticated": false, "error": "[invalid bearer token, token lookup failed]"});
        };
        let token_aud = if user.audiences.is_empty() {
            defaults
        } else {
            user.audiences.clone()
        };
        let common: Vec<&String> = requested.iter().filter(|a| token_aud.contains(a)).collect();
        if common.is_empty() {
            return json!({"authenticated": false, "error": "[invalid bearer token, token audiences is invalid for the target audiences]"});
        }
        json!({
            "authenticated": true,
            "user": {"username": user.username, "uid": user.uid, "groups": user.groups, "extra": user.extra},
            "audiences": common,
        })
    }

    /// The `status` of a SubjectAccessReview for `spec`.
    pub fn access_review(&mut self, spec: &Value) -> Value {
        let mut logged = spec.clone();
        logged["kind"] = json!("SubjectAccessReview");
        self.received.push(logged);
        if self.rules.iter().any(|r| r.matches(spec)) {
            json!({"allowed": true, "reason": "allowed by a fake rule"})
        } else {
            json!({"allowed": false})
        }
    }
}
