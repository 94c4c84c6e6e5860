//! Who is calling the kubelet API and whether they may, like the kubelet's webhook mode.
//!
//! Authentication: a client certificate verified against `--client-ca-file` (by the TLS layer)
//! gives the user (CN) and groups (O); else a bearer token is checked with a TokenReview; else
//! the request is `system:anonymous` when `--anonymous-auth`, and 401 otherwise. Authenticated
//! users also get the group `system:authenticated`. Authorization: a SubjectAccessReview on
//! `nodes/<subresource>` of this node (see [`super::route::subresource`]) unless AlwaysAllow.
//! Both answers are cached briefly (the kubelet's defaults: tokens 2 min; allowed 5 min, denied
//! 30 s). The API server sits behind the small [`Reviews`] trait (real: [`ApiReviews`]).
//!
//! Owns: the identity and the decision. Must not route or answer requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};

use crate::httpd::PeerIdentity;
use crate::kube::KubeApi;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    fn authenticated(name: String, mut groups: Vec<String>) -> User {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User { name, groups }
    }

    fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// What a request is authorized as: a verb on `nodes/<subresource>` named after this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
    pub node: String,
}

/// Why authentication or authorization could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("failed to review the bearer token: {0}")]
    TokenReview(String),
    #[error("failed to review access of {user}: {message}")]
    AccessReview { user: String, message: String },
}

/// The API server's answers.
pub trait Reviews: Send + Sync {
    /// TokenReview: the user the token belongs to, `None` when it is not valid. `Err` when the
    /// API server could not be asked or said it could not decide.
    fn review_token(&self, token: &str) -> Result<Option<User>, AuthError>;
    /// SubjectAccessReview: `(allowed, reason)`.
    fn review_access(&self, user: &User, attrs: &Attributes) -> Result<(bool, String), AuthError>;
}

/// [`Reviews`] through the API server client.
pub struct ApiReviews {
    pub api: Arc<dyn KubeApi>,
}

impl Reviews for ApiReviews {
    fn review_token(&self, token: &str) -> Result<Option<User>, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = self
            .api
            .token_review(&review)
            .map_err(|e| AuthError::TokenReview(e.to_string()))?;
        let Some(status) = answer.status else {
            return Err(AuthError::TokenReview("the review has no status".into()));
        };
        if status.authenticated == Some(true) {
            let user = status.user.unwrap_or_default();
            return Ok(Some(User::authenticated(
                user.username.unwrap_or_default(),
                user.groups.unwrap_or_default(),
            )));
        }
        match status.error.filter(|e| !e.is_empty()) {
            Some(e) => Err(AuthError::TokenReview(e)),
            None => Ok(None),
        }
    }

    fn review_access(&self, user: &User, attrs: &Attributes) -> Result<(bool, String), AuthError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.to_string()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.to_string()),
                    name: Some(attrs.node.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let err = |message: String| AuthError::AccessReview {
            user: user.name.clone(),
            message,
        };
        let answer = self
            .api
            .subject_access_review(&review)
            .map_err(|e| err(e.to_string()))?;
        let status = answer
            .status
            .ok_or_else(|| err("the review has no status".into()))?;
        if !status.allowed {
            if let Some(e) = status.evaluation_error.filter(|e| !e.is_empty()) {
                return Err(err(e));
            }
        }
        Ok((status.allowed, status.reason.unwrap_or_default()))
    }
}

/// How requests are authorized.
pub enum Authorizer {
    AlwaysAllow,
    Webhook,
}

/// Cache lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtl {
    pub token: Duration,
    pub allowed: Duration,
    pub denied: Duration,
}

impl Default for CacheTtl {
    fn default() -> CacheTtl {
        CacheTtl {
            token: Duration::from_secs(120),
            allowed: Duration::from_secs(300),
            denied: Duration::from_secs(30),
        }
    }
}

/// The outcome of checking one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed(User),
    /// 401.
    Unauthenticated,
    /// 403 with the kubelet's message.
    Forbidden(String),
    /// 500: the API server could not decide.
    Failed(String),
}

/// Token reviews by SHA-256 of the token: when asked, and the user (None: invalid).
type TokenCache = HashMap<Vec<u8>, (Instant, Option<User>)>;
/// Access decisions: when asked, and whether allowed.
type DecisionCache = HashMap<(User, Attributes), (Instant, bool)>;

/// Cache entries older than this many are pruned when the cache grows past it.
const CACHE_MAX: usize = 4096;

/// Authentication and authorization with their caches.
pub struct Auth {
    anonymous: bool,
    authorizer: Authorizer,
    reviews: Option<Arc<dyn Reviews>>,
    ttl: CacheTtl,
    tokens: Mutex<TokenCache>,
    decisions: Mutex<DecisionCache>,
}

impl Auth {
    /// `reviews` is `None` without an API server (then bearer tokens are not accepted and the
    /// authorizer must be AlwaysAllow).
    pub fn new(anonymous: bool, authorizer: Authorizer, reviews: Option<Arc<dyn Reviews>>) -> Auth {
        Auth {
            anonymous,
            authorizer,
            reviews,
            ttl: CacheTtl::default(),
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_ttl(mut self, ttl: CacheTtl) -> Auth {
        self.ttl = ttl;
        self
    }

    /// Who the caller is: `Ok(None)` means 401.
    pub fn authenticate(
        &self,
        peer: &PeerIdentity,
        authorization: Option<&str>,
        now: Instant,
    ) -> Result<Option<User>, AuthError> {
        if peer.is_authenticated() {
            if let (Some(cn), groups) = peer.subject() {
                if !cn.is_empty() {
                    return Ok(Some(User::authenticated(cn, groups)));
                }
            }
        }
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty());
        if let Some(token) = token {
            let Some(reviews) = &self.reviews else {
                return Ok(None);
            };
            let key = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
                .as_ref()
                .to_vec();
            if let Some((at, user)) = lock(&self.tokens).get(&key) {
                if now.duration_since(*at) < self.ttl.token {
                    return Ok(user.clone());
                }
            }
            let user = reviews.review_token(token)?;
            let mut cache = lock(&self.tokens);
            prune(&mut cache, now, self.ttl.token);
            cache.insert(key, (now, user.clone()));
            return Ok(user);
        }
        Ok(self.anonymous.then(User::anonymous))
    }

    /// Whether `user` may do `attrs`: `Ok((allowed, reason))`.
    pub fn authorize(
        &self,
        user: &User,
        attrs: &Attributes,
        now: Instant,
    ) -> Result<bool, AuthError> {
        let reviews = match (&self.authorizer, &self.reviews) {
            (Authorizer::AlwaysAllow, _) => return Ok(true),
            (Authorizer::Webhook, None) => {
                return Err(AuthError::AccessReview {
                    user: user.name.clone(),
                    message: "no API server to ask".into(),
                })
            }
            (Authorizer::Webhook, Some(r)) => r,
        };
        let key = (user.clone(), attrs.clone());
        if let Some((at, allowed)) = lock(&self.decisions).get(&key) {
            let ttl = if *allowed {
                self.ttl.allowed
            } else {
                self.ttl.denied
            };
            if now.duration_since(*at) < ttl {
                return Ok(*allowed);
            }
        }
        let (allowed, _reason) = reviews.review_access(user, attrs)?;
        let mut cache = lock(&self.decisions);
        prune(&mut cache, now, self.ttl.allowed);
        cache.insert(key, (now, allowed));
        Ok(allowed)
    }

    /// Authenticates and authorizes one request, with the kubelet's answers.
    pub fn check(
        &self,
        peer: &PeerIdentity,
        authorization: Option<&str>,
        method: &str,
        path: &str,
        node: &str,
        now: Instant,
    ) -> Verdict {
        let user = match self.authenticate(peer, authorization, now) {
            Ok(Some(u)) => u,
            Ok(None) => return Verdict::Unauthenticated,
            Err(e) => {
                log::warn!("failed to authenticate a kubelet API request path={path}: {e}");
                return Verdict::Unauthenticated;
            }
        };
        let attrs = Attributes {
            verb: super::route::verb(method),
            subresource: super::route::subresource(path),
            node: node.to_string(),
        };
        let what = format!(
            "(user={}, verb={}, resource=nodes, subresource={})",
            user.name, attrs.verb, attrs.subresource
        );
        match self.authorize(&user, &attrs, now) {
            Ok(true) => Verdict::Allowed(user),
            Ok(false) => Verdict::Forbidden(format!("Forbidden {what}")),
            Err(e) => {
                log::warn!("failed to authorize a kubelet API request path={path}: {e}");
                Verdict::Failed(format!("Authorization error {what}"))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn prune<K, V>(cache: &mut HashMap<K, (Instant, V)>, now: Instant, ttl: Duration) {
    if cache.len() >= CACHE_MAX {
        cache.retain(|_, (at, _)| now.duration_since(*at) < ttl);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Ca;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct FakeReviews {
        tokens: HashMap<String, User>,
        allow_user: Option<String>,
        token_calls: AtomicUsize,
        access_calls: AtomicUsize,
        seen: Mutex<Vec<Attributes>>,
    }

    impl Reviews for FakeReviews {
        fn review_token(&self, token: &str) -> Result<Option<User>, AuthError> {
            self.token_calls.fetch_add(1, Ordering::SeqCst);
            if token == "broken" {
                return Err(AuthError::TokenReview("unreachable".into()));
            }
            Ok(self.tokens.get(token).cloned())
        }
        fn review_access(
            &self,
            user: &User,
            attrs: &Attributes,
        ) -> Result<(bool, String), AuthError> {
            self.access_calls.fetch_add(1, Ordering::SeqCst);
            lock(&self.seen).push(attrs.clone());
            Ok((
                self.allow_user.as_deref() == Some(&user.name),
                String::new(),
            ))
        }
    }

    fn peer(cn: &str, org: Option<&str>) -> PeerIdentity {
        let ca = Ca::generate("ca").unwrap();
        let c = ca.issue_client(cn, org).unwrap();
        let der = CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap();
        PeerIdentity::from_verified_chain(vec![der.to_vec()])
    }

    fn fake() -> Arc<FakeReviews> {
        let mut f = FakeReviews {
            allow_user: Some("kube-apiserver-kubelet-client".into()),
            ..FakeReviews::default()
        };
        f.tokens.insert(
            "good".into(),
            User {
                name: "alice".into(),
                groups: vec!["devs".into(), "system:authenticated".into()],
            },
        );
        Arc::new(f)
    }

    #[test]
    fn client_certificate_gives_user_and_groups() {
        let auth = Auth::new(false, Authorizer::AlwaysAllow, None);
        let u = auth
            .authenticate(
                &peer("kube-apiserver-kubelet-client", Some("system:masters")),
                None,
                Instant::now(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(u.name, "kube-apiserver-kubelet-client");
        assert_eq!(u.groups, vec!["system:masters", "system:authenticated"]);
    }

    #[test]
    fn anonymous_is_401_unless_allowed() {
        let now = Instant::now();
        let closed = Auth::new(false, Authorizer::AlwaysAllow, None);
        assert_eq!(
            closed.check(&PeerIdentity::anonymous(), None, "GET", "/pods", "n", now),
            Verdict::Unauthenticated
        );
        let open = Auth::new(true, Authorizer::AlwaysAllow, None);
        assert_eq!(
            open.check(&PeerIdentity::anonymous(), None, "GET", "/pods", "n", now),
            Verdict::Allowed(User::anonymous())
        );
    }

    #[test]
    fn bearer_tokens_are_reviewed_once_then_cached() {
        let f = fake();
        let auth = Auth::new(false, Authorizer::AlwaysAllow, Some(f.clone()));
        let now = Instant::now();
        let anon = PeerIdentity::anonymous();
        let u = auth
            .authenticate(&anon, Some("Bearer good"), now)
            .unwrap()
            .unwrap();
        assert_eq!(u.name, "alice");
        auth.authenticate(&anon, Some("bearer good"), now).unwrap();
        assert_eq!(f.token_calls.load(Ordering::SeqCst), 1);
        // After the TTL it is asked again.
        auth.authenticate(&anon, Some("Bearer good"), now + Duration::from_secs(121))
            .unwrap();
        assert_eq!(f.token_calls.load(Ordering::SeqCst), 2);
        assert_eq!(auth.authenticate(&anon, Some("Bearer bad"), now), Ok(None));
        // A bad token is 401 even when anonymous requests are allowed.
        let open = Auth::new(true, Authorizer::AlwaysAllow, Some(f.clone()));
        assert_eq!(
            open.check(&anon, Some("Bearer bad"), "GET", "/pods", "n", now),
            Verdict::Unauthenticated
        );
        assert_eq!(
            open.check(&anon, Some("Bearer broken"), "GET", "/pods", "n", now),
            Verdict::Unauthenticated
        );
    }

    #[test]
    fn webhook_authorizes_on_the_node_subresource_and_caches() {
        let f = fake();
        let auth = Auth::new(false, Authorizer::Webhook, Some(f.clone()));
        let now = Instant::now();
        let api = peer("kube-apiserver-kubelet-client", Some("system:masters"));
        let v = auth.check(&api, None, "POST", "/exec/ns/p/c", "vk-node", now);
        assert!(matches!(v, Verdict::Allowed(_)), "{v:?}");
        auth.check(&api, None, "POST", "/exec/ns/p/c", "vk-node", now);
        assert_eq!(f.access_calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            lock(&f.seen)[0],
            Attributes {
                verb: "create",
                subresource: "proxy",
                node: "vk-node".into()
            }
        );
        let other = peer("mallory", None);
        assert_eq!(
            auth.check(&other, None, "GET", "/stats/summary", "vk-node", now),
            Verdict::Forbidden(
                "Forbidden (user=mallory, verb=get, resource=nodes, subresource=stats)".into()
            )
        );
        // Denials are cached for 30 s only.
        auth.check(
            &other,
            None,
            "GET",
            "/stats/summary",
            "vk-node",
            now + Duration::from_secs(10),
        );
        assert_eq!(f.access_calls.load(Ordering::SeqCst), 2);
        auth.check(
            &other,
            None,
            "GET",
            "/stats/summary",
            "vk-node",
            now + Duration::from_secs(31),
        );
        assert_eq!(f.access_calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn webhook_without_an_api_server_fails_closed() {
        let auth = Auth::new(true, Authorizer::Webhook, None);
        assert!(matches!(
            auth.check(
                &PeerIdentity::anonymous(),
                None,
                "GET",
                "/pods",
                "n",
                Instant::now()
            ),
            Verdict::Failed(_)
        ));
    }
}
