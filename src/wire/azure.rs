//! Azure IoT Hub's device credential: the shared access signature (SAS)
//! token a device sends as `Authorization` with each device-to-cloud
//! message. From the device's key (base64), the resource URI
//! (`{hub}.azure-devices.net/devices/{id}`) and an expiry (epoch seconds):
//!
//! ```text
//! sr  = percent-encode(resource URI)           (all but A-Z a-z 0-9 - . _ ~)
//! sig = percent-encode(base64(HMAC-SHA256(base64-decode(key), sr + "\n" + expiry)))
//! SharedAccessSignature sr={sr}&sig={sig}&se={expiry}[&skn={key name}]
//! ```
//!
//! This is what the Azure IoT device SDK for Python builds
//! (`azure.iot.device.common.auth.sastoken`); its tokens for fixed inputs
//! are this module's test vectors.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// What stays as it is in a SAS token's parts: the unreserved characters,
/// as Python's `urllib.parse.quote(s, safe="")` keeps them.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A device key that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the device key is not base64")]
    KeyNotBase64,
    #[error("the device key is empty")]
    EmptyKey,
}

/// The `Authorization` value for `resource_uri` until `expiry` (epoch
/// seconds), signed with the base64 `key`; `key_name` for a shared access
/// policy's key rather than the device's own.
pub fn sas_token(resource_uri: &str, key: &str, expiry: u64, key_name: Option<&str>) -> Result<String, SasError> {
    let key = base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| SasError::KeyNotBase64)?;
    if key.is_empty() {
        return Err(SasError::EmptyKey);
    }
    let resource = utf8_percent_encode(resource_uri, UNRESERVED).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::EmptyKey)?;
    mac.update(format!("{resource}\n{expiry}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let signature = utf8_percent_encode(&signature, UNRESERVED);
    let mut token = format!("SharedAccessSignature sr={resource}&sig={signature}&se={expiry}");
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.extend(utf8_percent_encode(name, UNRESERVED));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens the Azure IoT device SDK for Python (azure-iot-device 2.x)
    /// builds for the same inputs:
    ///
    /// ```text
    /// from azure.iot.device.common.auth.sastoken import RenewableSasToken
    /// from azure.iot.device.common.auth.signing_mechanism import SymmetricKeySigningMechanism
    /// t = RenewableSasToken(uri, SymmetricKeySigningMechanism(KEY), key_name=..., ttl=3600)
    /// t._expiry_time = 1767225600; print(t._build_token())
    /// ```
    #[test]
    fn tokens_equal_the_azure_sdk_s_for_the_same_key_resource_and_expiry() {
        const KEY: &str = "ZmxlZXRzdG9ybSB0ZXN0IGRldmljZSBrZXkgMDEyMzQ1Njc4OQ==";
        assert_eq!(
            sas_token("myhub.azure-devices.net/devices/cam-00042", KEY, 1767225600, None).unwrap(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fcam-00042\
             &sig=Xh6QGLwAw%2FpQpvMo0vDJnhXpweglLdeVlAAVmw2Z%2BOA%3D&se=1767225600"
        );
        assert_eq!(
            sas_token("myhub.azure-devices.net/devices/cam 42+x", KEY, 1767225600, Some("device")).unwrap(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fcam%2042%2Bx\
             &sig=9sw5ctIWHp79JuVUXSBr9fySTMhPl8NNuc6yrCUr7AA%3D&se=1767225600&skn=device"
        );
    }

    #[test]
    fn a_key_that_is_not_one_is_refused_without_showing_it() {
        let e = sas_token("h/devices/d", "not base64!", 1, None).unwrap_err();
        assert_eq!(e, SasError::KeyNotBase64);
        assert!(!e.to_string().contains("not base64!"));
        assert_eq!(sas_token("h/devices/d", "", 1, None).unwrap_err(), SasError::EmptyKey);
    }
}
