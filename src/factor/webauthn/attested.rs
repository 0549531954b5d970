//! The authenticator model (AAGUID) a registration states, read from the
//! attestation object's authenticator data (WebAuthn §6.1, §6.5.1).

/// rpIdHash (32) + flags (1) + signCount (4), then the attested data.
const AAGUID_AT: usize = 37;
/// The flag that says attested credential data follows.
const ATTESTED_DATA: u8 = 0x40;

pub fn aaguid(attestation_object: &[u8]) -> Option<[u8; 16]> {
    let value: serde_cbor_2::Value = serde_cbor_2::from_slice(attestation_object).ok()?;
    let serde_cbor_2::Value::Map(fields) = value else {
        return None;
    };
    let auth_data = fields.iter().find_map(|(key, value)| match (key, value) {
        (serde_cbor_2::Value::Text(name), serde_cbor_2::Value::Bytes(bytes))
            if name == "authData" =>
        {
            Some(bytes)
        }
        _ => None,
    })?;
    if auth_data.get(32)? & ATTESTED_DATA == 0 {
        return None;
    }
    auth_data.get(AAGUID_AT..AAGUID_AT + 16)?.try_into().ok()
}
