//! The node's certificate requests, as data: their subject, SANs, usages, signer and name, the
//! CertificateSigningRequest object, and the reading of what the API server says about one.
//!
//! Owns the kubelet's choices for its two kinds of certificate ([`Kind`]). Both have the
//! subject `O=system:nodes, CN=system:node:NAME` (organization first, as Go's `pkix.Name`
//! orders it) and an EC key, so no key encipherment. The client certificate
//! (`requestNodeCertificate`): usages `digital signature` and `client auth`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, and at bootstrap the name `node-csr-` + the
//! base64url SHA-512/256 of the public key, subject and usages (`digestedName`: the same key asks
//! under the same name, so a restart finds its earlier request). The serving certificate
//! (`NewKubeletServerCertificateManager`): usages `digital signature` and `server auth`, signer
//! `kubernetes.io/kubelet-serving`, SANs from the node's addresses ([`Kind::serving`], the
//! kubelet's `addressesToHostnamesAndIPs`). And `WaitForCertificate`'s reading of the
//! conditions (Denied and Failed end the wait, Approved waits for `status.certificate`).
//! Pure: no I/O; the key's signature is the only randomness (ECDSA).

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::NodeAddress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

/// The signer of kubelet client certificates.
pub const SIGNER_KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelet serving certificates.
pub const SIGNER_KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The usages of a node client certificate with an EC key.
pub const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];
/// The usages of a node serving certificate with an EC key.
pub const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];
/// The organization of every node's certificate.
pub const NODES_GROUP: &str = "system:nodes";

/// Which certificate the node asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The client certificate the node talks to the API server with.
    Client,
    /// The kubelet API's serving certificate, for these names and addresses (sorted).
    Serving {
        dns_names: Vec<String>,
        ips: Vec<IpAddr>,
    },
}

impl Kind {
    /// The serving certificate for a node with these addresses: `Hostname` (a name, or an
    /// address when it parses as one), `InternalDNS`/`ExternalDNS` as names,
    /// `InternalIP`/`ExternalIP` when they parse; deduplicated and sorted as the kubelet sorts
    /// them (IPs by their text). `None` when there is nothing to ask for.
    pub fn serving(addresses: &[NodeAddress]) -> Option<Kind> {
        let mut dns = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for a in addresses.iter().filter(|a| !a.address.is_empty()) {
            let ip = a.address.parse::<IpAddr>().ok();
            match (a.type_.as_str(), ip) {
                ("Hostname" | "InternalIP" | "ExternalIP", Some(ip)) => {
                    ips.insert((ip.to_string(), ip));
                }
                ("Hostname" | "InternalDNS" | "ExternalDNS", _) => {
                    dns.insert(a.address.clone());
                }
                _ => {}
            }
        }
        if dns.is_empty() && ips.is_empty() {
            return None;
        }
        Some(Kind::Serving {
            dns_names: dns.into_iter().collect(),
            ips: ips.into_iter().map(|(_, ip)| ip).collect(),
        })
    }

    pub fn signer(&self) -> &'static str {
        match self {
            Kind::Client => SIGNER_KUBELET_CLIENT,
            Kind::Serving { .. } => SIGNER_KUBELET_SERVING,
        }
    }

    pub fn usages(&self) -> &'static [&'static str] {
        match self {
            Kind::Client => &CLIENT_USAGES,
            Kind::Serving { .. } => &SERVING_USAGES,
        }
    }

    /// "client" or "serving", for the log.
    pub fn noun(&self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::Serving { .. } => "serving",
        }
    }
}

/// `system:node:NAME`, the CN (and user name) of node `node`.
pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

/// A PEM certificate request for node `node`'s `kind` of certificate, signed with `key`.
pub fn request_pem(key: &rcgen::KeyPair, node: &str, kind: &Kind) -> Result<String, rcgen::Error> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, NODES_GROUP);
    dn.push(rcgen::DnType::CommonName, node_user(node));
    params.distinguished_name = dn;
    if let Kind::Serving { dns_names, ips } = kind {
        for d in dns_names {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName(d.clone().try_into()?));
        }
        for ip in ips {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(*ip));
        }
    }
    params.serialize_request(key)?.pem()
}

/// Whether the certificate `der` is what `kind` asks for node `node`: the subject, and for a
/// serving certificate exactly its names and addresses (the certificate manager's
/// `certSatisfiesTemplate`: a node whose addresses changed asks again).
pub fn satisfies(der: &[u8], node: &str, kind: &Kind) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let subject = cert.subject();
    if first(&mut subject.iter_common_name()) != Some(node_user(node))
        || first(&mut subject.iter_organization()).as_deref() != Some(NODES_GROUP)
    {
        return false;
    }
    let Kind::Serving { dns_names, ips } = kind else {
        return true;
    };
    let (have_dns, have_ips) = match cert.subject_alternative_name() {
        Ok(Some(san)) => crate::certs::dns_and_ips(&san.value.general_names),
        _ => Default::default(),
    };
    let (have_dns, have_ips): (BTreeSet<String>, BTreeSet<IpAddr>) = (
        have_dns.into_iter().collect(),
        have_ips.into_iter().collect(),
    );
    have_dns == dns_names.iter().cloned().collect() && have_ips == ips.iter().copied().collect()
}

/// The kubelet's `digestedName`: `node-csr-` + base64url(SHA-512/256 of each of the public key
/// (PKIX DER), the CN, the organizations and the usages, each base64url-encoded and followed by
/// `|`).
pub fn request_name(spki_der: &[u8], common_name: &str, orgs: &[&str], usages: &[&str]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512_256);
    let mut write = |data: &[u8]| {
        ctx.update(b64.encode(data).as_bytes());
        ctx.update(b"|");
    };
    write(spki_der);
    write(common_name.as_bytes());
    for o in orgs {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", b64.encode(ctx.finish()))
}

/// The CertificateSigningRequest that asks for `kind` with `request_pem`, named `name`.
pub fn request_object(name: &str, request_pem: &str, kind: &Kind) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.as_bytes().to_vec()),
            signer_name: kind.signer().to_string(),
            usages: Some(kind.usages().iter().map(|u| u.to_string()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

/// Where a request stands, as `WaitForCertificate` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsrState {
    /// Neither approved nor denied yet.
    Pending,
    /// Approved; the signer has not issued the certificate yet.
    Approved,
    /// Approved and issued: the PEM certificate (chain).
    Issued(Vec<u8>),
    /// An end: the request will never be issued.
    Refused(Refusal),
}

/// Why a request will never be issued, in `WaitForCertificate`'s words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("certificate signing request is denied, reason: {reason}, message: {message}")]
    Denied { reason: String, message: String },
    #[error("certificate signing request failed, reason: {reason}, message: {message}")]
    Failed { reason: String, message: String },
    #[error("csr {name:?} changed UIDs")]
    Replaced { name: String },
    #[error("csr {name:?} was deleted")]
    Deleted { name: String },
}

/// What `csr` says, for the request created with UID `uid`.
pub fn state(csr: &CertificateSigningRequest, uid: &str) -> CsrState {
    let name = csr.metadata.name.clone().unwrap_or_default();
    if csr.metadata.uid.as_deref().unwrap_or_default() != uid {
        return CsrState::Refused(Refusal::Replaced { name });
    }
    let status = csr.status.as_ref();
    let mut approved = false;
    for c in status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
    {
        let (reason, message) = (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        );
        match c.type_.as_str() {
            "Denied" => return CsrState::Refused(Refusal::Denied { reason, message }),
            "Failed" => return CsrState::Refused(Refusal::Failed { reason, message }),
            "Approved" => approved = true,
            _ => {}
        }
    }
    match status.and_then(|s| s.certificate.as_ref()) {
        Some(cert) if approved && !cert.0.is_empty() => CsrState::Issued(cert.0.clone()),
        _ if approved => CsrState::Approved,
        _ => CsrState::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus;

    fn csr(
        uid: &str,
        conditions: serde_json::Value,
        cert: Option<&str>,
    ) -> CertificateSigningRequest {
        let mut status = serde_json::json!({ "conditions": conditions });
        if let Some(c) = cert {
            status["certificate"] =
                serde_json::json!(base64::engine::general_purpose::STANDARD.encode(c));
        }
        CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some("node-csr-x".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: CertificateSigningRequestSpec::default(),
            status: Some(
                serde_json::from_value::<CertificateSigningRequestStatus>(status).unwrap(),
            ),
        }
    }

    fn cond(type_: &str) -> serde_json::Value {
        serde_json::json!({"type": type_, "status": "True", "reason": format!("R{type_}"), "message": format!("m {type_}")})
    }

    #[test]
    fn the_wait_reads_conditions_as_the_kubelet_does() {
        assert_eq!(
            state(&csr("u", serde_json::json!([]), None), "u"),
            CsrState::Pending
        );
        assert_eq!(
            state(&csr("u", serde_json::json!([cond("Approved")]), None), "u"),
            CsrState::Approved
        );
        assert_eq!(
            state(
                &csr("u", serde_json::json!([cond("Approved")]), Some("PEM")),
                "u"
            ),
            CsrState::Issued(b"PEM".to_vec())
        );
        assert_eq!(
            state(&csr("u", serde_json::json!([]), Some("PEM")), "u"),
            CsrState::Pending,
            "a certificate without approval is not taken"
        );
        let denied = state(
            &csr(
                "u",
                serde_json::json!([cond("Approved"), cond("Denied")]),
                Some("PEM"),
            ),
            "u",
        );
        let CsrState::Refused(r) = denied else {
            panic!("{denied:?}")
        };
        assert_eq!(
            r.to_string(),
            "certificate signing request is denied, reason: RDenied, message: m Denied"
        );
        let CsrState::Refused(r) = state(&csr("u", serde_json::json!([cond("Failed")]), None), "u")
        else {
            panic!()
        };
        assert_eq!(
            r.to_string(),
            "certificate signing request failed, reason: RFailed, message: m Failed"
        );
        assert_eq!(
            state(
                &csr("other", serde_json::json!([cond("Approved")]), Some("PEM")),
                "u"
            ),
            CsrState::Refused(Refusal::Replaced {
                name: "node-csr-x".into()
            })
        );
    }

    #[test]
    fn the_request_names_the_node_and_its_name_follows_the_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = request_pem(&key, "vk-node", &Kind::Client).unwrap();
        use x509_parser::prelude::FromDer as _;
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(block.label, "CERTIFICATE REQUEST");
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .unwrap();
        assert_eq!(
            req.certification_request_info.subject.to_string(),
            "O=system:nodes, CN=system:node:vk-node",
            "organization first, as Go writes it"
        );
        use rcgen::PublicKeyData as _;
        let spki = key.subject_public_key_info();
        let name = request_name(&spki, "system:node:vk-node", &[NODES_GROUP], &CLIENT_USAGES);
        // base64url of 32 bytes, unpadded.
        assert!(
            name.starts_with("node-csr-") && name.len() == "node-csr-".len() + 43,
            "{name}"
        );
        assert_eq!(
            name,
            request_name(&spki, "system:node:vk-node", &[NODES_GROUP], &CLIENT_USAGES)
        );
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert_ne!(
            name,
            request_name(
                &other.subject_public_key_info(),
                "system:node:vk-node",
                &[NODES_GROUP],
                &CLIENT_USAGES
            )
        );
        assert_ne!(
            name,
            request_name(
                &spki,
                "system:node:vk-node2",
                &[NODES_GROUP],
                &CLIENT_USAGES
            )
        );
        let obj = serde_json::to_value(request_object(&name, &pem, &Kind::Client)).unwrap();
        assert_eq!(
            obj["spec"]["signerName"],
            "kubernetes.io/kube-apiserver-client-kubelet"
        );
        assert_eq!(
            obj["spec"]["usages"],
            serde_json::json!(["digital signature", "client auth"])
        );
        assert_eq!(
            obj["spec"]["request"],
            base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
        );
    }

    #[test]
    fn the_digest_matches_the_kubelets() {
        // The kubelet's digestedName (its recipe run with Go 1.23) over these parts.
        let name = request_name(
            b"key",
            "system:node:n",
            &["system:nodes"],
            &["digital signature", "client auth"],
        );
        assert_eq!(name, "node-csr-litVUSUtPM4znXCAy-mNiVlLUDyk-MwyFQaIhfgqZnQ");
    }

    fn addr(type_: &str, address: &str) -> NodeAddress {
        NodeAddress {
            type_: type_.into(),
            address: address.into(),
        }
    }

    #[test]
    fn the_serving_request_names_the_nodes_addresses_as_the_kubelet_does() {
        assert_eq!(Kind::serving(&[]), None);
        assert_eq!(Kind::serving(&[addr("InternalIP", "not-an-ip")]), None);
        let kind = Kind::serving(&[
            addr("InternalIP", "10.0.0.7"),
            addr("Hostname", "vk-node"),
            addr("ExternalIP", "10.0.0.10"),
            addr("InternalIP", "10.0.0.7"),
            addr("Hostname", "192.168.1.1"),
            addr("InternalDNS", "a.example"),
            addr("ExternalDNS", ""),
        ])
        .unwrap();
        assert_eq!(
            kind,
            Kind::Serving {
                dns_names: vec!["a.example".into(), "vk-node".into()],
                // Sorted as text, as the kubelet sorts them.
                ips: vec![
                    "10.0.0.10".parse().unwrap(),
                    "10.0.0.7".parse().unwrap(),
                    "192.168.1.1".parse().unwrap()
                ],
            }
        );
        assert_eq!(kind.signer(), "kubernetes.io/kubelet-serving");
        assert_eq!(kind.usages(), ["digital signature", "server auth"]);

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = request_pem(&key, "vk-node", &kind).unwrap();
        assert_eq!(
            crate::certs::requested_sans(pem.as_bytes()).unwrap(),
            [
                "a.example",
                "vk-node",
                "10.0.0.10",
                "10.0.0.7",
                "192.168.1.1"
            ]
        );
        let obj = serde_json::to_value(request_object("", &pem, &kind)).unwrap();
        assert_eq!(obj["spec"]["signerName"], "kubernetes.io/kubelet-serving");
        assert_eq!(
            obj["spec"]["usages"],
            serde_json::json!(["digital signature", "server auth"])
        );

        // What the signer issues for it satisfies it; a node whose addresses changed asks again.
        let ca = crate::certs::Ca::generate("ca").unwrap();
        let issued = ca
            .sign_request(
                pem.as_bytes(),
                std::time::Duration::from_secs(60),
                crate::certs::Usage::Server,
            )
            .unwrap();
        let (_, cert) = x509_parser::pem::parse_x509_pem(issued.as_bytes()).unwrap();
        assert!(satisfies(&cert.contents, "vk-node", &kind));
        assert!(!satisfies(&cert.contents, "other", &kind), "another node");
        let moved =
            Kind::serving(&[addr("InternalIP", "10.0.0.8"), addr("Hostname", "vk-node")]).unwrap();
        assert!(!satisfies(&cert.contents, "vk-node", &moved));
        assert!(
            satisfies(&cert.contents, "vk-node", &Kind::Client),
            "the subject only"
        );
        assert!(!satisfies(b"junk", "vk-node", &kind));
    }
}
