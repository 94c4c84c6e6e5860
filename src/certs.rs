//! X.509 material generated in memory with `rcgen`: a CA that issues serving certificates (SANs
//! for IPs and DNS names) and client certificates (CN = user, O = group), and self-signed serving
//! certificates. Tests use it so that no key material is committed; the kubelet API server uses
//! it for its self-signed serving certificate when none is configured. A CA also signs a
//! certificate request (PEM CSR), as a cluster's signer does (the fake API server issues the
//! certificates that TLS bootstrap asks for).
//!
//! Owns: key generation and certificate signing. Must not read or write files, and must not
//! decide trust (the TLS layer does).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// What a signed request's certificate is for (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Client,
    Server,
}

/// Why generating a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("failed to generate {what}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("not a certificate request: {message}")]
    BadRequest { message: String },
}

fn gen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Generate { what, source }
}

/// A certificate and its private key, both PEM. The key is PKCS#8 (`PRIVATE KEY`), ECDSA P-256.
#[derive(Clone)]
pub struct CertKeyPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKeyPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate authority held in memory.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn leaf_params(
    common_name: &str,
    organization: Option<&str>,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, CertError> {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params =
        CertificateParams::new(sans).map_err(gen_err(format!("parameters for {common_name}")))?;
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

impl Ca {
    /// A new self-signed CA with this common name.
    pub fn generate(common_name: &str) -> Result<Ca, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(gen_err(format!("key for ca {common_name}")))?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .map_err(gen_err(format!("ca {common_name}")))?;
        Ok(Ca { issuer })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for these SANs (IP addresses and DNS names), e.g.
    /// `["127.0.0.1", "localhost"]`.
    pub fn issue_server(&self, common_name: &str, sans: &[&str]) -> Result<CertKeyPem, CertError> {
        let params = leaf_params(common_name, None, sans, ExtendedKeyUsagePurpose::ServerAuth)?;
        self.sign(params, common_name)
    }

    /// A client certificate for user `common_name` in group `organization`, the way Kubernetes
    /// reads identities from certificates (CN = user, O = group).
    pub fn issue_client(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<CertKeyPem, CertError> {
        let params = leaf_params(
            common_name,
            organization,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        self.sign(params, common_name)
    }

    /// Signs a PEM certificate request (an ECDSA P-256 key) for its subject's CN and O and its
    /// DNS and IP SANs, as a client or a serving certificate (`usage`), valid from now for
    /// `lifetime`; the certificate, PEM.
    pub fn sign_request(
        &self,
        csr_pem: &[u8],
        lifetime: std::time::Duration,
        usage: Usage,
    ) -> Result<String, CertError> {
        use x509_parser::prelude::FromDer as _;
        let bad = |message: String| CertError::BadRequest { message };
        let (_, block) =
            x509_parser::pem::parse_x509_pem(csr_pem).map_err(|e| bad(e.to_string()))?;
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .map_err(|e| bad(e.to_string()))?;
        let info = &req.certification_request_info;
        let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
            it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
        };
        let cn = first(&mut info.subject.iter_common_name()).unwrap_or_default();
        let org = first(&mut info.subject.iter_organization());
        let sans = request_sans(&req);
        let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
        let usage = match usage {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        };
        let mut params = leaf_params(&cn, org.as_deref(), &sans, usage)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(60)).into();
        params.not_after = (now + lifetime).into();
        let key = RequestKey(info.subject_pki.subject_public_key.data.to_vec());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen_err(format!("certificate for {cn}")))?;
        Ok(cert.pem())
    }

    fn sign(&self, params: CertificateParams, common_name: &str) -> Result<CertKeyPem, CertError> {
        let key = KeyPair::generate().map_err(gen_err(format!("key for {common_name}")))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen_err(format!("certificate for {common_name}")))?;
        Ok(CertKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The DNS names, then the IP addresses, a PEM certificate request asks for, as text
/// (`vk-node`, `127.0.0.1`).
pub fn requested_sans(csr_pem: &[u8]) -> Result<Vec<String>, CertError> {
    use x509_parser::prelude::FromDer as _;
    let bad = |message: String| CertError::BadRequest { message };
    let (_, block) = x509_parser::pem::parse_x509_pem(csr_pem).map_err(|e| bad(e.to_string()))?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| bad(e.to_string()))?;
    Ok(request_sans(&req))
}

/// The DNS names and IP addresses a certificate request asks for, as text.
fn request_sans(
    req: &x509_parser::certification_request::X509CertificationRequest<'_>,
) -> Vec<String> {
    use x509_parser::extensions::ParsedExtension;
    let mut out = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            let (dns, ips) = dns_and_ips(&san.general_names);
            out.extend(dns);
            out.extend(ips.iter().map(ToString::to_string));
        }
    }
    out
}

/// The DNS names and the IP addresses (4 or 16 bytes) among a SAN extension's names; other
/// kinds are left out.
pub(crate) fn dns_and_ips(
    names: &[x509_parser::extensions::GeneralName<'_>],
) -> (Vec<String>, Vec<std::net::IpAddr>) {
    use x509_parser::extensions::GeneralName;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for name in names {
        match name {
            GeneralName::DNSName(d) => dns.push((*d).to_string()),
            GeneralName::IPAddress(b) => {
                let ip = <[u8; 4]>::try_from(*b)
                    .map(std::net::IpAddr::from)
                    .or_else(|_| <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from));
                ips.extend(ip.ok());
            }
            _ => {}
        }
    }
    (dns, ips)
}

/// The public key of a certificate request (ECDSA P-256, the only kind vk-cri asks with).
struct RequestKey(Vec<u8>);

impl rcgen::PublicKeyData for RequestKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A self-signed serving certificate for these SANs (what a kubelet makes for :10250 when it is
/// given no certificate).
pub fn self_signed_server(common_name: &str, sans: &[&str]) -> Result<CertKeyPem, CertError> {
    let params = leaf_params(common_name, None, sans, ExtendedKeyUsagePurpose::ServerAuth)?;
    let key = KeyPair::generate().map_err(gen_err(format!("key for {common_name}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(gen_err(format!("certificate for {common_name}")))?;
    Ok(CertKeyPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_signs_a_nodes_request_for_its_subject() {
        let ca = Ca::generate("ca").unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem =
            crate::bootstrap::csr::request_pem(&key, "n1", &crate::bootstrap::csr::Kind::Client)
                .unwrap();
        let cert = ca
            .sign_request(
                pem.as_bytes(),
                std::time::Duration::from_secs(3600),
                Usage::Client,
            )
            .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&block.contents).unwrap();
        assert_eq!(x.subject().to_string(), "O=system:nodes, CN=system:node:n1");
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        assert_eq!(x.public_key().raw, &spki[..], "the request's key");
        let life = x.validity().not_after.timestamp() - x.validity().not_before.timestamp();
        assert_eq!(life, 3600 + 60);
        assert!(matches!(
            ca.sign_request(b"junk", std::time::Duration::from_secs(1), Usage::Client),
            Err(CertError::BadRequest { .. })
        ));
    }

    #[test]
    fn ca_issues_pem_material() {
        let ca = Ca::generate("ca").unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let server = ca.issue_server("srv", &["127.0.0.1", "localhost"]).unwrap();
        assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let client = ca.issue_client("admin", Some("system:masters")).unwrap();
        assert_ne!(client.cert_pem, server.cert_pem);
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn self_signed_server_has_a_key() {
        let s = self_signed_server("vk-node", &["127.0.0.1"]).unwrap();
        assert!(s.cert_pem.contains("CERTIFICATE"));
        assert!(s.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn invalid_dns_san_is_an_error() {
        let ca = Ca::generate("ca").unwrap();
        let err = ca.issue_server("srv", &["b\u{e4}d-n\u{e4}me"]).unwrap_err();
        assert!(err.to_string().starts_with("failed to generate"));
    }
}
