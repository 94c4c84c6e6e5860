//! Checking PEM: that a bundle holds certificates, that a key file holds one unencrypted private
//! key (PKCS#1, PKCS#8 or SEC1). Pure; parsing is rustls-pki-types'. It does not check that the
//! DER inside is well formed: rustls does that when the TLS configuration is built (see `tls`).

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Origin, Problem};

/// All certificates in a PEM bundle; at least one. Other PEM sections are skipped.
pub(crate) fn certificates(
    pem_bytes: &[u8],
    origin: &Origin,
) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let mut certs = Vec::new();
    for section in sections(pem_bytes, origin)? {
        if let (SectionKind::Certificate, der) = section {
            certs.push(CertificateDer::from(der));
        }
    }
    if certs.is_empty() {
        return Err(Problem::NoCertificate {
            origin: origin.clone(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn private_key(
    pem_bytes: &[u8],
    origin: &Origin,
) -> Result<PrivateKeyDer<'static>, Problem> {
    // rustls-pki-types skips sections it does not know, which includes encrypted keys: look for
    // them first so the message says why the key was not found. Both the PKCS#8 form and the
    // legacy OpenSSL form ("Proc-Type: 4,ENCRYPTED" inside an RSA/EC key block) are caught.
    if contains(pem_bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(pem_bytes, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(Problem::EncryptedPrivateKey {
            origin: origin.clone(),
        });
    }
    let mut found_certificate = false;
    for (kind, der) in sections(pem_bytes, origin)? {
        match kind {
            SectionKind::RsaPrivateKey => return Ok(PrivateKeyDer::Pkcs1(der.into())),
            SectionKind::PrivateKey => return Ok(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::EcPrivateKey => return Ok(PrivateKeyDer::Sec1(der.into())),
            SectionKind::Certificate => found_certificate = true,
            _ => {}
        }
    }
    Err(Problem::NoPrivateKey {
        origin: origin.clone(),
        found_certificate,
    })
}

/// Every PEM section rustls-pki-types recognises, in order.
fn sections(pem_bytes: &[u8], origin: &Origin) -> Result<Vec<(SectionKind, Vec<u8>)>, Problem> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::MalformedPem {
            origin: origin.clone(),
            // Only fixed text: the library's own messages can quote the offending line.
            what: match e {
                pem::Error::MissingSectionEnd { .. } => "a section has no END line",
                pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
                pem::Error::Base64Decode(_) => "a section body is not valid base64",
                pem::Error::SectionTooLarge => "a section is too large",
                _ => "unreadable",
            },
        })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = include_bytes!("../../tests/fixtures/kubeconfig/test-ca.crt");
    const OTHER_CA: &[u8] = include_bytes!("../../tests/fixtures/kubeconfig/test-other-ca.crt");
    const RSA_PKCS1: &[u8] =
        include_bytes!("../../tests/fixtures/kubeconfig/test-client-rsa-pkcs1.key");
    const RSA_PKCS8: &[u8] =
        include_bytes!("../../tests/fixtures/kubeconfig/test-client-rsa-pkcs8.key");
    const EC_SEC1: &[u8] =
        include_bytes!("../../tests/fixtures/kubeconfig/test-client-ec-sec1.key");
    const EC_PKCS8: &[u8] =
        include_bytes!("../../tests/fixtures/kubeconfig/test-client-ec-pkcs8.key");

    fn origin() -> Origin {
        Origin::Data("client-key-data")
    }

    #[test]
    fn finds_every_certificate_of_a_bundle() {
        let bundle = [CA, OTHER_CA].concat();
        let certs = certificates(&bundle, &origin()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0], CertificateDer::from_pem_slice(CA).unwrap());
    }

    #[test]
    fn a_key_is_not_a_certificate() {
        let err = certificates(EC_SEC1, &Origin::Data("certificate-authority-data")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "certificate-authority-data: no certificate (expected a PEM \"CERTIFICATE\" block)"
        );
    }

    #[test]
    fn reads_each_key_form() {
        assert!(matches!(
            private_key(RSA_PKCS1, &origin()),
            Ok(PrivateKeyDer::Pkcs1(_))
        ));
        assert!(matches!(
            private_key(RSA_PKCS8, &origin()),
            Ok(PrivateKeyDer::Pkcs8(_))
        ));
        assert!(matches!(
            private_key(EC_SEC1, &origin()),
            Ok(PrivateKeyDer::Sec1(_))
        ));
        assert!(matches!(
            private_key(EC_PKCS8, &origin()),
            Ok(PrivateKeyDer::Pkcs8(_))
        ));
    }

    #[test]
    fn a_certificate_is_not_a_key() {
        let err = private_key(CA, &origin()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client-key-data: no private key, only a certificate (expected PKCS#1, PKCS#8 or \
             SEC1 PEM)"
        );
    }

    #[test]
    fn text_without_pem_has_no_key() {
        let err = private_key(b"hello", &origin()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client-key-data: no private key (expected PKCS#1, PKCS#8 or SEC1 PEM)"
        );
    }

    #[test]
    fn encrypted_keys_are_named() {
        let pkcs8 =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        for pem_bytes in [&pkcs8[..], &legacy[..]] {
            let err = private_key(pem_bytes, &origin()).unwrap_err();
            assert_eq!(
                err.to_string(),
                "client-key-data: encrypted private keys are not supported"
            );
        }
    }

    #[test]
    fn malformed_pem_is_reported_without_its_content() {
        let truncated = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n";
        let err = private_key(truncated, &origin()).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            message,
            "client-key-data: malformed PEM (a section has no END line)"
        );
        assert!(!message.contains("c2VjcmV0"));
    }

    #[test]
    fn file_origins_name_the_path() {
        let origin = Origin::File("client-key", "/etc/vk/node.key".into());
        let err = private_key(b"", &origin).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client-key /etc/vk/node.key: no private key (expected PKCS#1, PKCS#8 or SEC1 PEM)"
        );
    }
}
