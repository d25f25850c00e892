#!/usr/bin/env python3
"""SCEP test client shaped like Apple's macOS/iOS SCEP client.  TEST-ONLY.

This is an independent SCEP (RFC 8894) client used by fleetkit's tests to
exercise `fleetkit serve`'s SCEP service the way an Apple device does.  It is
not part of the product, it is not hardened, and it must never be used to
enrol real devices.  It needs only Python 3, `cryptography` and `asn1crypto`.

What it does (mirroring Apple's profiled / Security.framework behaviour):

  1. GET ?operation=GetCACert&message=<name>   (DER cert or degenerate PKCS#7)
     GET ?operation=GetCACaps                  (Apple asks for CACert first)
  2. Picks the CA (optionally by fingerprint, any certificate of the reply),
     the RA encryption cert (keyEncipherment) and RA signing cert
     (digitalSignature) that chain to it; a single certificate is used for
     everything.  EC recipients are refused.
  3. RSA key + PKCS#10 CSR (challengePassword: PrintableString if possible,
     else UTF8String) + a temporary self-signed certificate (CN=<UUID>,
     keyUsage digitalSignature|keyEncipherment) used to sign the pkiMessage.
  4. pkiMessage = SignedData(data = EnvelopedData(CSR)) with the SCEP signed
     attributes transactionID / messageType / senderNonce.
  5. POST (application/x-pki-message) or GET (&message=<base64>, with '+',
     '/' and '=' left unescaped, as NSURLComponents does).
  6. Checks the CertRep (signature by the RA signing cert, messageType 3,
     transactionID, recipientNonce, senderNonce), decrypts the reply and
     checks the issued certificate.  These reply checks are stricter than
     Apple's (Apple does not compare nonces or the transactionID).

Exit codes: 0 SUCCESS, 2 FAILURE CertRep, 3 HTTP error / other error,
            4 a check of the reply failed, 5 PENDING (after any polling).

Subjects are RFC 4514 strings ("CN=dev1,O=Example"): the first RDN is the
most specific one, so the reported cert_subject equals --subject when the
server copies the requested subject.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from asn1crypto import cms, core, parser
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import ExtendedKeyUsageOID

# --------------------------------------------------------------------------
# Constants

OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
OID_FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"  # RFC 8894 id-scep-failInfoText

MSG_CERTREP = "3"
MSG_RENEWAL_REQ = "17"
MSG_PKCS_REQ = "19"
MSG_CERT_POLL = "20"

STATUS_NAMES = {"0": "SUCCESS", "2": "FAILURE", "3": "PENDING"}
FAIL_INFO_NAMES = {
    "0": "badAlg",
    "1": "badMessageCheck",
    "2": "badRequest",
    "3": "badTime",
    "4": "badCertId",
}

EXIT_SUCCESS, EXIT_FAILURE, EXIT_OTHER, EXIT_CHECK, EXIT_PENDING = 0, 2, 3, 4, 5

# cipher name -> (asn1crypto algorithm name, key length, block size)
CIPHERS = {
    "des": ("des", 8, 8),  # single DES: only for negative tests
    "des3": ("tripledes_3key", 24, 8),  # 1.2.840.113549.3.7
    "aes128": ("aes128_cbc", 16, 16),
    "aes192": ("aes192_cbc", 24, 16),
    "aes256": ("aes256_cbc", 32, 16),
}
CIPHER_BY_ASN1 = {v[0]: k for k, v in CIPHERS.items()}

DIGESTS = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha512": hashes.SHA512}
HASH_BY_NAME = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Apple's CAFingerprint is matched by length (SecSCEP.c, scep_find_ca_cert).
FINGERPRINT_BY_LEN = {
    16: "md5",
    20: "sha1",
    28: "sha224",
    32: "sha256",
    48: "sha384",
    64: "sha512",
}

SUBJECT_KEYS = {
    "CN": "common_name",
    "O": "organization_name",
    "OU": "organizational_unit_name",
    "C": "country_name",
    "L": "locality_name",
    "ST": "state_or_province_name",
    "STREET": "street_address",
    "DC": "domain_component",
    "E": "email_address",
    "EMAILADDRESS": "email_address",
    "SERIALNUMBER": "serial_number",
    "UID": "user_id",
}

PRINTABLE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


class ClientError(Exception):
    """Ends the run with an exit code, a JSON status and a message."""

    def __init__(self, exit_code, status, message, **extra):
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status
        self.message = message
        self.extra = extra


def other_error(message, **extra):
    return ClientError(EXIT_OTHER, "ERROR", message, **extra)


def check_error(message, **extra):
    return ClientError(EXIT_CHECK, "CHECK_FAILED", message, **extra)


# --------------------------------------------------------------------------
# Small helpers


def is_printable(text):
    return all(ch in PRINTABLE_CHARS for ch in text)


def directory_string(text):
    kind = "printable_string" if is_printable(text) else "utf8_string"
    return asn1_x509.DirectoryString(name=kind, value=text)


def split_rdns(text):
    """Split an RFC 4514 string on unescaped commas."""
    parts, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def build_name(subject):
    """RFC 4514 string -> asn1crypto Name (first RDN written = last encoded)."""
    rdns = []
    for part in split_rdns(subject):
        if "=" not in part:
            raise other_error(f"bad subject component {part!r}")
        key, value = part.split("=", 1)
        key = key.strip()
        name = SUBJECT_KEYS.get(key.upper())
        if name is None:
            name = key  # dotted OID
        if name in ("email_address", "domain_component"):
            atv_value = value
        else:
            atv_value = directory_string(value)
        atv = asn1_x509.NameTypeAndValue({"type": name, "value": atv_value})
        rdns.append(asn1_x509.RelativeDistinguishedName([atv]))
    rdns.reverse()
    return asn1_x509.Name(name="", value=asn1_x509.RDNSequence(rdns))


def load_pem_or_der_certs(path):
    data = open(path, "rb").read()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def load_private_key(path):
    data = open(path, "rb").read()
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def asn1_cert(cert):
    return asn1_x509.Certificate.load(cert_der(cert))


def spki_der(public_key):
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_usage(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def describe(cert):
    return cert.subject.rfc4514_string() or "<empty subject>"


def issued_by(child, parent):
    try:
        child.verify_directly_issued_by(parent)
        return True
    except Exception:
        return False


def apple_transaction_id(public_key):
    """Apple: upper-case hex SHA-1 of the key's SecKey data (PKCS#1 RSAPublicKey)."""
    pkcs1 = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return hashlib.sha1(pkcs1).hexdigest().upper()


# --------------------------------------------------------------------------
# HTTP


class Http:
    def __init__(self, base_url, ca_file, timeout):
        self.base_url = base_url
        self.timeout = timeout
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https"):
            raise other_error(f"unsupported URL scheme in {base_url!r}")
        self.context = None
        if parsed.scheme == "https":
            self.context = ssl.create_default_context(cafile=ca_file)
        self.log = []
        # The server's X-Fleetkit-Reason header of the last answer (red-team probes).
        self.last_reason = None

    def url(self, query):
        sep = "&" if "?" in self.base_url else "?"
        return self.base_url + sep + query

    def request(self, method, query, body=None, content_type=None):
        url = self.url(query)
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                data = resp.read()
                ctype = resp.headers.get("Content-Type", "")
                self.last_reason = resp.headers.get("x-fleetkit-reason")
                self.log.append({"method": method, "url": url[:200], "status": resp.status})
                return resp.status, ctype, data
        except urllib.error.HTTPError as err:
            text = err.read()[:500].decode("utf-8", "replace")
            self.log.append({"method": method, "url": url[:200], "status": err.code})
            raise ClientError(
                EXIT_OTHER,
                "HTTP_ERROR",
                f"{method} {query.split('&')[0]}: HTTP {err.code}: {text.strip()}",
                http_status=err.code,
            )
        except (urllib.error.URLError, OSError) as err:
            raise ClientError(EXIT_OTHER, "HTTP_ERROR", f"{method} {url[:120]}: {err}")


# --------------------------------------------------------------------------
# GetCACert / GetCACaps


def get_ca_caps(http):
    status, _ctype, data = http.request("GET", "operation=GetCACaps")
    text = data.decode("utf-8", "replace")
    caps = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return caps


def get_ca_certs(http, ca_name):
    query = "operation=GetCACert"
    if ca_name is not None:
        query += "&message=" + urllib.parse.quote(ca_name, safe="")
    status, ctype, data = http.request("GET", query)
    ctype_main = ctype.split(";")[0].strip().lower()
    if ctype_main == "application/x-x509-ca-cert":
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError as err:
            raise other_error(f"GetCACert: bad DER certificate: {err}")
    elif ctype_main == "application/x-x509-ca-ra-cert":
        try:
            info = cms.ContentInfo.load(data)
            if info["content_type"].native != "signed_data":
                raise ValueError(f"content type {info['content_type'].native}")
            sd = info["content"]
            if len(sd["signer_infos"]) != 0:
                raise ValueError("certs-only SignedData has signers")
            certs = [
                x509.load_der_x509_certificate(c.chosen.dump())
                for c in (sd["certificates"] or [])
                if c.name == "certificate"
            ]
        except ValueError as err:
            raise other_error(f"GetCACert: bad degenerate PKCS#7: {err}")
        if not certs:
            raise other_error("GetCACert: PKCS#7 holds no certificates")
    else:
        raise other_error(f"GetCACert: unexpected Content-Type {ctype!r}")
    return ctype_main, certs


def fingerprint_matches(cert, fingerprint):
    algo = FINGERPRINT_BY_LEN.get(len(fingerprint))
    if algo is None:
        raise other_error(f"CA fingerprint length {len(fingerprint)} matches no digest")
    return hashlib.new(algo, cert_der(cert)).digest() == fingerprint


def chains_to(cert, ca, pool, depth=0):
    """True if cert is `ca` or chains up to it through certs in pool."""
    if cert == ca:
        return True
    if depth > 5:
        return False
    for parent in pool:
        if parent != cert and issued_by(cert, parent) and chains_to(parent, ca, pool, depth + 1):
            return True
    return False


def top_of_chain(cert, pool, depth=0):
    for parent in pool:
        if parent != cert and issued_by(cert, parent) and depth < 5:
            return top_of_chain(parent, pool, depth + 1)
    return cert


def select_ca_ra(certs, fingerprint):
    """Return (ca, ra_encryption, ra_signing) the way SecSCEPValidateCACertMessage does."""
    ca = None
    if fingerprint is not None:
        matches = [c for c in certs if fingerprint_matches(c, fingerprint)]
        if not matches:
            raise other_error("no GetCACert certificate matches the CA fingerprint")
        ca = matches[0]
    if len(certs) == 1:
        only = certs[0]
        return only, only, only

    combined, enc_only, sign_only = [], [], []
    for cert in certs:
        ku = key_usage(cert)
        can_sign = bool(ku and ku.digital_signature)
        can_enc = bool(ku and ku.key_encipherment)
        if can_sign and can_enc:
            combined.append(cert)
        elif can_enc:
            enc_only.append(cert)
        elif can_sign:
            sign_only.append(cert)

    def first_chaining(candidates):
        for cand in candidates:
            anchor = ca if ca is not None else top_of_chain(cand, certs)
            if anchor != cand and chains_to(cand, anchor, certs):
                return cand, anchor
        return None, None

    sign, sign_ca = first_chaining(sign_only)
    enc, enc_ca = first_chaining(enc_only)
    if sign is not None and enc is not None and sign_ca == enc_ca:
        return sign_ca, enc, sign
    both, both_ca = first_chaining(combined)
    if both is not None:
        return both_ca, both, both
    raise other_error(
        "GetCACert: found no RA certificate (keyUsage digitalSignature/keyEncipherment)"
        " chaining to the CA"
    )


# --------------------------------------------------------------------------
# CSR, self-signed signer, pkiMessage


def build_csr(
    private_key,
    subject,
    challenge,
    digest,
    request_ca=False,
    dns_names=(),
    email_names=(),
    uri_names=(),
):
    pub = asn1_keys.PublicKeyInfo.load(spki_der(private_key.public_key()))
    attributes = []
    if challenge is not None:
        attributes.append(
            asn1_csr.CRIAttribute(
                {"type": "challenge_password", "values": [directory_string(challenge)]}
            )
        )
    # Bad-input tests: a request that asks for a CA certificate, or names DNS SANs.
    extensions = []
    if request_ca:
        extensions.append(
            {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": True}}
        )
    if dns_names or email_names or uri_names:
        names = [asn1_x509.GeneralName(name="dns_name", value=d) for d in dns_names]
        names += [asn1_x509.GeneralName(name="rfc822_name", value=m) for m in email_names]
        names += [
            asn1_x509.GeneralName(name="uniform_resource_identifier", value=u) for u in uri_names
        ]
        extensions.append(
            {
                "extn_id": "subject_alt_name",
                "critical": False,
                "extn_value": names,
            }
        )
    if extensions:
        attributes.append(
            asn1_csr.CRIAttribute({"type": "extension_request", "values": [extensions]})
        )
    info = asn1_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": build_name(subject),
            "subject_pk_info": pub,
            "attributes": attributes,
        }
    )
    signature = private_key.sign(info.dump(), asym_padding.PKCS1v15(), DIGESTS[digest]())
    req = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": f"{digest}_rsa"},
            "signature": signature,
        }
    )
    return req.dump()


def build_self_signed(private_key, digest):
    """Apple's SecSCEPCreateTemporaryIdentity: CN=<UUID>, KU sign+encipher.

    Built with asn1crypto because cryptography's builder refuses SHA-1, and
    Apple signs this temporary certificate with SHA-1 by default.
    """
    name = build_name("CN=" + str(uuid.uuid4()).upper())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    sig_alg = {"algorithm": f"{digest}_rsa"}
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": x509.random_serial_number(),
            "signature": sig_alg,
            "issuer": name,
            "validity": {
                "not_before": asn1_x509.Time(
                    name="utc_time", value=now - datetime.timedelta(minutes=5)
                ),
                "not_after": asn1_x509.Time(
                    name="utc_time", value=now + datetime.timedelta(days=1)
                ),
            },
            "subject": name,
            "subject_public_key_info": asn1_keys.PublicKeyInfo.load(
                spki_der(private_key.public_key())
            ),
            "extensions": [
                {
                    "extn_id": "key_usage",
                    "critical": True,
                    "extn_value": asn1_x509.KeyUsage({"digital_signature", "key_encipherment"}),
                }
            ],
        }
    )
    signature = private_key.sign(tbs.dump(), asym_padding.PKCS1v15(), DIGESTS[digest]())
    cert = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": sig_alg, "signature_value": signature}
    )
    return x509.load_der_x509_certificate(cert.dump())


def same_issuer_and_serial(ias, cert):
    """Byte-exact issuerAndSerialNumber match, as NSS and Go's pkcs7 do it."""
    tbs = asn1_cert(cert)["tbs_certificate"]
    return (
        ias["serial_number"].native == cert.serial_number
        and ias["issuer"].dump() == tbs["issuer"].dump()
    )


def issuer_and_serial(cert):
    c = asn1_cert(cert)
    return cms.IssuerAndSerialNumber(
        {"issuer": c["tbs_certificate"]["issuer"], "serial_number": c.serial_number}
    )


def sym_encrypt(cipher_name, key, iv, plaintext):
    _alg, _klen, block = CIPHERS[cipher_name]
    padder = padding.PKCS7(block * 8).padder()
    data = padder.update(plaintext) + padder.finalize()
    if cipher_name == "des":
        algo = TripleDES(key * 3)  # K1=K2=K3 is single DES
    elif cipher_name == "des3":
        algo = TripleDES(key)
    else:
        algo = algorithms.AES(key)
    enc = Cipher(algo, modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def sym_decrypt(cipher_name, key, iv, ciphertext):
    _alg, klen, block = CIPHERS[cipher_name]
    if len(key) != klen:
        raise check_error(f"content key length {len(key)} does not fit {cipher_name}")
    if cipher_name == "des":
        algo = TripleDES(key * 3)
    elif cipher_name == "des3":
        algo = TripleDES(key)
    else:
        algo = algorithms.AES(key)
    dec = Cipher(algo, modes.CBC(iv)).decryptor()
    data = dec.update(ciphertext) + dec.finalize()
    unpadder = padding.PKCS7(block * 8).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise check_error("bad padding after decrypting the reply envelope")


def build_enveloped(content, recipient, cipher_name):
    pub = recipient.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        raise other_error("recipient certificate has an EC key; Apple refuses EC recipients")
    if not isinstance(pub, rsa.RSAPublicKey):
        raise other_error("recipient certificate key is not RSA")
    alg_name, klen, block = CIPHERS[cipher_name]
    key = os.urandom(klen)
    iv = os.urandom(block)
    encrypted_key = pub.encrypt(key, asym_padding.PKCS1v15())
    ktri = cms.KeyTransRecipientInfo(
        {
            "version": "v0",
            "rid": cms.RecipientIdentifier(
                name="issuer_and_serial_number", value=issuer_and_serial(recipient)
            ),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": encrypted_key,
        }
    )
    env = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [cms.RecipientInfo(name="ktri", value=ktri)],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {
                    "algorithm": alg_name,
                    "parameters": core.OctetString(iv),
                },
                "encrypted_content": sym_encrypt(cipher_name, key, iv, content),
            },
        }
    )
    return cms.ContentInfo({"content_type": "enveloped_data", "content": env}).dump()


def scep_attr(oid, value):
    return cms.CMSAttribute({"type": cms.CMSAttributeType(oid), "values": [value]})


def build_pki_message(envelope, signer_cert, signer_key, digest, msg_type, transaction_id, nonce):
    hash_cls = DIGESTS[digest]
    h = hashes.Hash(hash_cls())
    h.update(envelope)
    attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [h.finalize()]}),
            scep_attr(OID_TRANSACTION_ID, core.PrintableString(transaction_id)),
            scep_attr(OID_MESSAGE_TYPE, core.PrintableString(msg_type)),
            scep_attr(OID_SENDER_NONCE, core.OctetString(nonce)),
        ]
    )
    # The signature covers the DER SET OF (asn1crypto sorts SetOf on dump).
    signature = signer_key.sign(attrs.dump(), asym_padding.PKCS1v15(), hash_cls())
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number", value=issuer_and_serial(signer_cert)
            ),
            "digest_algorithm": {"algorithm": digest},
            "signed_attrs": attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        }
    )
    sd = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": digest}],
            "encap_content_info": {"content_type": "data", "content": envelope},
            "certificates": [asn1_cert(signer_cert)],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()


class IssuerAndSubject(core.Sequence):
    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


# --------------------------------------------------------------------------
# Parsing messages (ours, when replayed, and the CertRep)


def attr_map(signed_attrs):
    out = {}
    for attr in signed_attrs or []:
        oid = attr["type"].dotted
        values = list(attr["values"])
        if oid in out or len(values) != 1:
            raise check_error(f"signed attribute {oid} must occur once with one value")
        out[oid] = values[0]
    return out


def value_der(value):
    return value.dump() if not isinstance(value, bytes) else value


def printable_attr(attrs, oid, name, required=True):
    if oid not in attrs:
        if required:
            raise check_error(f"reply lacks the {name} attribute")
        return None
    der = value_der(attrs[oid])
    if not der or der[0] != 0x13:
        raise check_error(f"{name} is not a PrintableString")
    return core.PrintableString.load(der).native


def octet_attr(attrs, oid, name):
    if oid not in attrs:
        raise check_error(f"reply lacks the {name} attribute")
    der = value_der(attrs[oid])
    if not der or der[0] != 0x04:
        raise check_error(f"{name} is not an OCTET STRING")
    return core.OctetString.load(der).native


def signed_attrs_der(signer_info):
    raw = signer_info["signed_attrs"].dump()
    return b"\x31" + raw[1:]  # [0] IMPLICIT -> universal SET for the signature


def parse_request(der):
    """Read back transactionID, nonce, type, cipher, digest, signer from a saved request."""
    info = cms.ContentInfo.load(der)
    sd = info["content"]
    si = sd["signer_infos"][0]
    attrs = attr_map(si["signed_attrs"])
    env = cms.ContentInfo.load(sd["encap_content_info"]["content"].native)["content"]
    alg = env["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native
    signer = None
    sid = si["sid"].chosen
    for c in sd["certificates"] or []:
        cert = x509.load_der_x509_certificate(c.chosen.dump())
        if same_issuer_and_serial(sid, cert):
            signer = cert
    return {
        "transaction_id": printable_attr(attrs, OID_TRANSACTION_ID, "transactionID"),
        "message_type": printable_attr(attrs, OID_MESSAGE_TYPE, "messageType"),
        "nonce": octet_attr(attrs, OID_SENDER_NONCE, "senderNonce"),
        "cipher": CIPHER_BY_ASN1.get(alg, alg),
        "digest": si["digest_algorithm"]["algorithm"].native,
        "signer": signer,
    }


def verify_certrep(der, ra_signing_cert):
    """Verify the outer SignedData with the RA signing cert.

    Returns (signed_data, signed attributes by OID, digest name, content bytes).
    """
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise check_error(f"CertRep is {info['content_type'].native}, not signed_data")
        sd = info["content"]
        signer_infos = list(sd["signer_infos"])
    except ValueError as err:
        raise check_error(f"CertRep is not a CMS SignedData: {err}")
    if len(signer_infos) != 1:
        raise check_error(f"CertRep has {len(signer_infos)} signers, expected 1")
    si = signer_infos[0]
    sid = si["sid"]
    if sid.name != "issuer_and_serial_number":
        raise check_error("CertRep signer is not identified by issuerAndSerialNumber")
    if not same_issuer_and_serial(sid.chosen, ra_signing_cert):
        raise check_error(
            "CertRep is not signed by the RA signing certificate from GetCACert"
            f" ({describe(ra_signing_cert)})"
        )
    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in HASH_BY_NAME:
        raise check_error(f"CertRep uses unsupported digest {digest_name}")
    sig_alg = si["signature_algorithm"]["algorithm"].native
    if sig_alg not in (
        "rsassa_pkcs1v15",
        f"{digest_name}_rsa",
    ):
        raise check_error(f"CertRep signature algorithm {sig_alg} not accepted")
    if si["signed_attrs"].native is None or len(si["signed_attrs"]) == 0:
        raise check_error("CertRep has no signed attributes")
    attrs = attr_map(si["signed_attrs"])

    content = sd["encap_content_info"]["content"]
    content_bytes = b"" if content.native is None else content.native
    h = hashes.Hash(HASH_BY_NAME[digest_name]())
    h.update(content_bytes)
    if octet_attr(attrs, "1.2.840.113549.1.9.4", "messageDigest") != h.finalize():
        raise check_error("CertRep messageDigest does not match its content")
    ct = attrs.get("1.2.840.113549.1.9.3")
    if ct is None or value_der(ct) != core.ObjectIdentifier("1.2.840.113549.1.7.1").dump():
        raise check_error("CertRep contentType attribute is missing or not id-data")
    try:
        ra_signing_cert.public_key().verify(
            si["signature"].native,
            signed_attrs_der(si),
            asym_padding.PKCS1v15(),
            HASH_BY_NAME[digest_name](),
        )
    except Exception:
        raise check_error("CertRep signature does not verify with the RA signing certificate")
    return sd, attrs, digest_name, content_bytes


def decrypt_reply(envelope_der, signer_cert, signer_key):
    try:
        info = cms.ContentInfo.load(envelope_der)
        if info["content_type"].native != "enveloped_data":
            raise check_error(f"reply pkcsPKIEnvelope is {info['content_type'].native}")
        env = info["content"]
        recipients = list(env["recipient_infos"])
    except ValueError as err:
        raise check_error(f"reply pkcsPKIEnvelope does not parse: {err}")
    match = None
    for ri in recipients:
        if ri.name != "ktri":
            continue
        rid = ri.chosen["rid"]
        if rid.name == "issuer_and_serial_number" and same_issuer_and_serial(
            rid.chosen, signer_cert
        ):
            match = ri.chosen
    if match is None:
        raise check_error("reply envelope has no recipient matching our signer certificate")
    try:
        key = signer_key.decrypt(match["encrypted_key"].native, asym_padding.PKCS1v15())
    except ValueError:
        raise check_error("cannot decrypt the reply content-encryption key")
    eci = env["encrypted_content_info"]
    alg = eci["content_encryption_algorithm"]["algorithm"].native
    cipher_name = CIPHER_BY_ASN1.get(alg)
    if cipher_name is None:
        raise check_error(f"reply uses unsupported content encryption {alg}")
    iv = eci["content_encryption_algorithm"]["parameters"].native
    ciphertext = encrypted_content_bytes(eci)
    return cipher_name, sym_decrypt(cipher_name, key, iv, ciphertext)


def ber_octets(data):
    """Contents of a (possibly constructed, BER) OCTET STRING value."""
    out, pos = b"", 0
    while pos < len(data):
        _cls, method, tag, header, contents, trailer = parser.parse(data[pos:])
        pos += len(header) + len(contents) + len(trailer)
        out += ber_octets(contents) if method == 1 else contents
    return out


def encrypted_content_bytes(eci):
    """encryptedContent of an EncryptedContentInfo, primitive or constructed.

    Go's pkcs7 (micromdm scepserver/scepclient) writes [0] as a constructed
    value wrapping one OCTET STRING, which asn1crypto refuses to parse.
    """
    raw = eci.dump()
    _c, _m, _t, _h, contents, _tr = parser.parse(raw)
    pos, index = 0, 0
    while pos < len(contents):
        cls, method, tag, header, inner, trailer = parser.parse(contents[pos:])
        pos += len(header) + len(inner) + len(trailer)
        if index == 2 and cls == 2 and tag == 0:
            return ber_octets(inner) if method == 1 else inner
        index += 1
    return b""


def certs_from_degenerate(der):
    try:
        info = cms.ContentInfo.load(der)
        sd = info["content"]
        return [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in (sd["certificates"] or [])
            if c.name == "certificate"
        ]
    except ValueError as err:
        raise check_error(f"decrypted reply is not a degenerate SignedData: {err}")


def verify_chain(cert, ca_file, ca_certs):
    """openssl verify against --ca-file (or the GetCACert CA), GetCACert certs untrusted."""
    openssl = shutil.which("openssl")
    with tempfile.TemporaryDirectory() as tmp:
        leaf = os.path.join(tmp, "leaf.pem")
        with open(leaf, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        untrusted = os.path.join(tmp, "untrusted.pem")
        with open(untrusted, "wb") as fh:
            for c in ca_certs:
                fh.write(c.public_bytes(serialization.Encoding.PEM))
        if ca_file is None:
            ca_file = untrusted
        if openssl is None:
            roots = load_pem_or_der_certs(ca_file)
            return any(chains_to(cert, r, ca_certs + roots) for r in roots), "python"
        cmd = [openssl, "verify", "-CAfile", ca_file, "-untrusted", untrusted, leaf]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


# --------------------------------------------------------------------------
# The enrolment


def pick_cipher(arg, caps):
    if arg != "auto":
        return arg
    return "aes128" if "AES" in caps else "des3"  # profiled: AES, else 3DES


def pick_digest(arg, caps):
    if arg != "auto":
        return arg
    if "SHA-512" in caps:
        return "sha512"
    if "SHA-256" in caps:
        return "sha256"
    if caps and "SHA-1" not in caps:
        raise other_error("GetCACaps advertises none of SHA-512, SHA-256, SHA-1")
    return "sha1"


def send_pki_operation(http, method, body, get_encoding="apple"):
    if method == "post":
        return http.request("POST", "operation=PKIOperation", body, "application/x-pki-message")
    msg = base64.b64encode(body).decode("ascii")
    if get_encoding == "percent":
        msg = urllib.parse.quote(msg, safe="")  # '+' -> %2B, '/' -> %2F, '=' -> %3D
    # "apple": '+', '/' and '=' left as they are (NSURLQueryItem style).
    return http.request("GET", "operation=PKIOperation&message=" + msg)


def run(args, result):
    http = Http(args.url, args.ca_file, args.timeout)

    # 1. CA certificates and capabilities (Apple: GetCACert, then GetCACaps).
    if args.ca_certs:
        # What an earlier GetCACert returned (a device that fetched it before the
        # server rotated its RA).
        ctype, ca_certs = "saved", load_pem_or_der_certs(args.ca_certs)
    else:
        ctype, ca_certs = get_ca_certs(http, args.ca_name)
    caps = get_ca_caps(http) if not args.no_caps else []
    result["getcacert_content_type"] = ctype
    result["getcacert_count"] = len(ca_certs)
    result["ca_caps"] = caps

    fingerprint = None
    fp_text = args.cafingerprint or args.cafingerprint_sha1
    if fp_text:
        fingerprint = bytes.fromhex(fp_text.replace(":", "").replace(" ", ""))
        if args.cafingerprint_sha1 and len(fingerprint) != 20:
            raise other_error("--cafingerprint-sha1 needs 20 bytes")
    ca, ra_enc, ra_sign = select_ca_ra(ca_certs, fingerprint)
    result["ca_subject"] = describe(ca)
    result["ra_encryption_subject"] = describe(ra_enc)
    result["ra_signing_subject"] = describe(ra_sign)

    recipient = ra_enc
    if args.encrypt_to:
        recipient = load_pem_or_der_certs(args.encrypt_to)[0]
        result["encrypted_to"] = describe(recipient)
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise other_error(
            f"RA encryption certificate {describe(recipient)} has a non-RSA key; Apple refuses it"
        )

    method = args.method
    if method == "auto":
        method = "post" if "POSTPKIOperation" in caps else "get"
    result["method"] = method

    if args.padding_oracle:
        return padding_oracle(http, args, result, ra_sign)

    # 2. Key, signer and request (or a replayed request).
    renewal = bool(args.renew_with_cert)
    if args.key_in:
        csr_key = load_private_key(args.key_in)
    else:
        csr_key = rsa.generate_private_key(public_exponent=65537, key_size=args.key_size)
    if args.key_out:
        with open(args.key_out, "wb") as fh:
            fh.write(
                csr_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        os.chmod(args.key_out, 0o600)

    if args.reuse_request:
        body = open(args.reuse_request, "rb").read()
        req = parse_request(body)
        if req["signer"] is None:
            raise other_error("saved request carries no signer certificate")
        signer_cert = req["signer"]
        signer_key = load_private_key(args.renew_with_key) if args.renew_with_key else csr_key
        cipher, digest = req["cipher"], req["digest"]
        transaction_id, nonce, msg_type = req["transaction_id"], req["nonce"], req["message_type"]
    else:
        cipher = pick_cipher(args.cipher, caps)
        digest = pick_digest(args.digest, caps)
        if renewal:
            if not args.renew_with_key:
                raise other_error("--renew-with-cert needs --renew-with-key")
            signer_cert = load_pem_or_der_certs(args.renew_with_cert)[0]
            signer_key = load_private_key(args.renew_with_key)
            msg_type = args.renewal_message_type
        else:
            signer_key = csr_key
            signer_cert = build_self_signed(csr_key, args.self_signed_digest)
            msg_type = MSG_PKCS_REQ
        challenge = args.challenge
        if renewal and not args.challenge_on_renewal:
            challenge = None
        csr_der = build_csr(
            csr_key,
            args.subject,
            challenge,
            digest,
            args.request_ca,
            args.dns_san,
            args.email_san,
            args.uri_san,
        )
        if args.save_csr:
            with open(args.save_csr, "wb") as fh:
                fh.write(csr_der)
        transaction_id = args.transaction_id or apple_transaction_id(csr_key.public_key())
        nonce = bytes.fromhex(args.sender_nonce) if args.sender_nonce else os.urandom(16)
        envelope = build_enveloped(csr_der, recipient, cipher)
        body = build_pki_message(
            envelope, signer_cert, signer_key, digest, msg_type, transaction_id, nonce
        )
        if args.save_request:
            with open(args.save_request, "wb") as fh:
                fh.write(body)
        if args.concurrent > 1:
            bodies = [(body, signer_cert, signer_key)]
            for _ in range(args.concurrent - 1):
                if not args.concurrent_distinct:
                    bodies.append((body, signer_cert, signer_key))
                    continue
                k = rsa.generate_private_key(public_exponent=65537, key_size=args.key_size)
                sc = build_self_signed(k, args.self_signed_digest)
                c = build_csr(k, args.subject, challenge, digest)
                b = build_pki_message(
                    build_enveloped(c, recipient, cipher),
                    sc,
                    k,
                    digest,
                    MSG_PKCS_REQ,
                    apple_transaction_id(k.public_key()),
                    os.urandom(16),
                )
                bodies.append((b, sc, k))
            return send_concurrently(http, method, bodies, ra_sign, result)

    result.update(
        {
            "message_type": msg_type,
            "transaction_id": transaction_id,
            "sender_nonce": nonce.hex(),
            "cipher": cipher,
            "digest": digest,
        }
    )

    # 3. Send, then poll while PENDING if asked to.
    polls_left = args.poll_count
    while True:
        http_status, reply_ctype, reply = send_pki_operation(http, method, body, args.get_encoding)
        result["http_status"] = http_status
        result["reason"] = http.last_reason
        if reply_ctype.split(";")[0].strip().lower() != "application/x-pki-message":
            result["reply_content_type_warning"] = reply_ctype
        sd, attrs, reply_digest, content = verify_certrep(reply, ra_sign)
        result["digest_in_reply"] = reply_digest
        rep_type = printable_attr(attrs, OID_MESSAGE_TYPE, "messageType")
        if rep_type != MSG_CERTREP:
            raise check_error(f"reply messageType is {rep_type!r}, expected '3'")
        rep_tid = printable_attr(attrs, OID_TRANSACTION_ID, "transactionID")
        if rep_tid != transaction_id:
            raise check_error(f"reply transactionID {rep_tid!r} != ours {transaction_id!r}")
        if octet_attr(attrs, OID_RECIPIENT_NONCE, "recipientNonce") != nonce:
            raise check_error("reply recipientNonce does not equal our senderNonce")
        server_nonce = octet_attr(attrs, OID_SENDER_NONCE, "senderNonce")
        if len(server_nonce) != 16:
            raise check_error(f"reply senderNonce is {len(server_nonce)} bytes, expected 16")
        result["reply_sender_nonce"] = server_nonce.hex()
        result["reply_nonce_is_echo"] = server_nonce == nonce
        status = printable_attr(attrs, OID_PKI_STATUS, "pkiStatus")
        if status not in STATUS_NAMES:
            raise check_error(f"unknown pkiStatus {status!r}")
        result["pki_status"] = STATUS_NAMES[status]
        if status != "3" or polls_left <= 0:
            break
        polls_left -= 1
        time.sleep(args.poll_interval)
        # CertPoll (20): same transactionID, fresh nonce, IssuerAndSubject inside.
        nonce = os.urandom(16)
        ias = IssuerAndSubject(
            {
                "issuer": asn1_cert(ca)["tbs_certificate"]["subject"],
                "subject": build_name(args.subject),
            }
        ).dump()
        body = build_pki_message(
            build_enveloped(ias, recipient, cipher),
            signer_cert,
            signer_key,
            digest,
            MSG_CERT_POLL,
            transaction_id,
            nonce,
        )
        result["message_type"] = MSG_CERT_POLL

    if status == "2":
        fail_info = printable_attr(attrs, OID_FAIL_INFO, "failInfo", required=False)
        result["fail_info"] = int(fail_info) if fail_info and fail_info.isdigit() else fail_info
        result["fail_info_name"] = FAIL_INFO_NAMES.get(fail_info)
        if fail_info is None:
            raise check_error("FAILURE CertRep without failInfo")
        if fail_info not in FAIL_INFO_NAMES:
            raise check_error(f"FAILURE CertRep with unknown failInfo {fail_info!r}")
        if OID_FAIL_INFO_TEXT in attrs:
            try:
                result["fail_info_text"] = core.UTF8String.load(
                    value_der(attrs[OID_FAIL_INFO_TEXT])
                ).native
            except ValueError:
                result["fail_info_text"] = None
        raise ClientError(
            EXIT_FAILURE, "FAILURE", f"server answered FAILURE ({result['fail_info_name']})"
        )
    if status == "3":
        raise ClientError(EXIT_PENDING, "PENDING", "server answered PENDING")

    # 4. SUCCESS: decrypt, pick our certificate, check it.
    reply_cipher, degenerate = decrypt_reply(content, signer_cert, signer_key)
    result["cipher_in_reply"] = reply_cipher
    if reply_cipher != cipher and not args.allow_reply_cipher_mismatch:
        raise check_error(f"reply encrypted with {reply_cipher}, request used {cipher}")
    issued_all = certs_from_degenerate(degenerate)
    result["reply_cert_count"] = len(issued_all)
    ours = spki_der(csr_key.public_key())
    mine = [i for i, c in enumerate(issued_all) if spki_der(c.public_key()) == ours]
    if not mine:
        raise check_error("no certificate in the reply carries our public key")
    cert = issued_all[mine[0]]
    result["issued_cert_index"] = mine[0]
    if mine[0] != 0 and not args.allow_issued_not_first:
        # Apple's profiled takes objectAtIndex:0 of the returned certificates.
        raise check_error(f"issued certificate is at index {mine[0]}; Apple uses the first")

    result["cert_serial"] = format(cert.serial_number, "x")
    result["cert_subject"] = cert.subject.rfc4514_string()
    result["cert_issuer"] = cert.issuer.rfc4514_string()
    result["not_before"] = cert.not_valid_before_utc.isoformat()
    result["not_after"] = cert.not_valid_after_utc.isoformat()

    if args.cert_out:
        with open(args.cert_out, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))

    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise check_error("issued certificate is a CA certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        has_client_auth = ExtendedKeyUsageOID.CLIENT_AUTH in eku
    except x509.ExtensionNotFound:
        has_client_auth = False
    result["client_auth"] = has_client_auth
    if not has_client_auth and not args.allow_no_client_auth:
        raise check_error("issued certificate lacks extendedKeyUsage clientAuth")
    ok, detail = verify_chain(cert, args.ca_file, ca_certs)
    result["chain_verified"] = ok
    if not ok:
        raise check_error(f"issued certificate does not chain to the CA: {detail}")
    result["status"] = "SUCCESS"
    return EXIT_SUCCESS


# --------------------------------------------------------------------------
# Red-team probe: the same (or several) requests at once


def send_concurrently(http, method, bodies, ra_sign, result):
    """Sends every body at the same moment (one thread and connection each); reports
    each answer's status, failInfo and issued certificate serial."""
    import threading

    barrier = threading.Barrier(len(bodies))
    answers = [None] * len(bodies)

    def one(i, body, signer_cert, signer_key):
        mine = Http(http.base_url, None, http.timeout)
        mine.context = http.context
        barrier.wait()
        try:
            _s, _c, reply = send_pki_operation(mine, method, body)
            _sd, attrs, _d, content = verify_certrep(reply, ra_sign)
            status = STATUS_NAMES.get(printable_attr(attrs, OID_PKI_STATUS, "pkiStatus"))
            out = {"status": status, "reason": mine.last_reason}
            if status == "FAILURE":
                out["fail_info"] = FAIL_INFO_NAMES.get(
                    printable_attr(attrs, OID_FAIL_INFO, "failInfo", required=False)
                )
            elif status == "SUCCESS":
                _cipher, degenerate = decrypt_reply(content, signer_cert, signer_key)
                out["cert_serial"] = format(certs_from_degenerate(degenerate)[0].serial_number, "x")
        except ClientError as err:
            out = {"status": err.status, "message": err.message}
        answers[i] = out

    threads = [
        threading.Thread(target=one, args=(i, b, sc, k)) for i, (b, sc, k) in enumerate(bodies)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result["answers"] = answers
    result["status"] = "CONCURRENT"
    return EXIT_SUCCESS


# --------------------------------------------------------------------------
# Red-team probe: CBC padding oracle on a captured request


def padding_oracle(http, args, result, ra_sign):
    """Recovers the last --oracle-bytes bytes of plaintext block --oracle-block of the
    EnvelopedData of a captured request, by sending that block alone under chosen IVs,
    wrapped in a SignedData of our own (a fresh self-signed key), and telling valid
    from invalid padding by the CertRep's failInfo (or reason header)."""
    der = open(args.padding_oracle, "rb").read()
    sd = cms.ContentInfo.load(der)["content"]
    env = cms.ContentInfo.load(sd["encap_content_info"]["content"].native)["content"]
    eci = env["encrypted_content_info"]
    alg = eci["content_encryption_algorithm"]
    iv = alg["parameters"].native
    ct = eci["encrypted_content"].native
    bs = len(iv)
    b = args.oracle_block
    prev = iv if b == 0 else ct[(b - 1) * bs : b * bs]
    target = ct[b * bs : (b + 1) * bs]
    if len(target) != bs:
        raise other_error("no such ciphertext block")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = build_self_signed(key, "sha256")
    answers = {}
    queries = [0]

    def answer(iv2):
        new_env = cms.EnvelopedData(
            {
                "version": env["version"],
                "recipient_infos": env["recipient_infos"],
                "encrypted_content_info": {
                    "content_type": "data",
                    "content_encryption_algorithm": {
                        "algorithm": alg["algorithm"],
                        "parameters": core.OctetString(bytes(iv2)),
                    },
                    "encrypted_content": target,
                },
            }
        )
        envelope = cms.ContentInfo({"content_type": "enveloped_data", "content": new_env}).dump()
        body = build_pki_message(
            envelope, signer, key, "sha256", MSG_PKCS_REQ, uuid.uuid4().hex, os.urandom(16)
        )
        queries[0] += 1
        _status, _ctype, reply = send_pki_operation(http, "post", body)
        _sd, attrs, _digest, _content = verify_certrep(reply, ra_sign)
        fail = printable_attr(attrs, OID_FAIL_INFO, "failInfo", required=False)
        seen = (fail, http.last_reason)
        answers[seen] = answers.get(seen, 0) + 1
        return seen

    # Every guess of one byte is sent; the answer that stands out (the rare one) is
    # valid padding.
    inter = [None] * bs
    for pos in range(bs - 1, bs - 1 - args.oracle_bytes, -1):
        pad = bs - pos
        prefix = os.urandom(bs)
        by_answer = {}
        for g in range(256):
            iv2 = bytearray(prefix)
            for j in range(pos + 1, bs):
                iv2[j] = inter[j] ^ pad
            iv2[pos] = g
            by_answer.setdefault(answer(iv2), []).append(g)
        if len(by_answer) < 2:
            break  # every answer alike: no oracle
        rare = min(by_answer.values(), key=len)
        common = max(by_answer, key=lambda k: len(by_answer[k]))
        found = None
        for g in rare:
            if pos == bs - 1:
                iv3 = bytearray(prefix)
                iv3[pos] = g
                iv3[pos - 1] ^= 0xFF
                if answer(iv3) == common:
                    continue
            found = g
            break
        if found is None:
            break
        inter[pos] = found ^ pad
    recovered = bytes(
        inter[p] ^ prev[p] for p in range(bs - args.oracle_bytes, bs) if inter[p] is not None
    )
    result["recovered_hex"] = recovered.hex()
    result["oracle_queries"] = queries[0]
    result["oracle_answers"] = [
        {"fail_info": k[0], "reason": k[1], "count": v} for k, v in answers.items()
    ]
    result["status"] = "ORACLE"
    return EXIT_SUCCESS


# --------------------------------------------------------------------------
# CLI


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Test-only SCEP client shaped like Apple's macOS client."
    )
    p.add_argument("--url", required=True, help="SCEP URL, e.g. https://host:port/scep")
    p.add_argument("--ca-file", help="root CA PEM: TLS trust and issued-cert chain check")
    p.add_argument("--ca-name", default=None, help="GetCACert message (profile 'Name')")
    p.add_argument("--cafingerprint-sha1", help="hex SHA-1 of the CA certificate")
    p.add_argument(
        "--cafingerprint",
        help="hex fingerprint of the CA cert; digest chosen by length like Apple "
        "(MD5/SHA-1/224/256/384/512)",
    )
    p.add_argument("--challenge", help="challengePassword placed in the CSR")
    p.add_argument("--subject", default="CN=fleetkit-test", help='RFC 4514, e.g. "CN=dev,O=Org"')
    p.add_argument("--cipher", default="auto", choices=["auto"] + list(CIPHERS))
    p.add_argument("--digest", default="auto", choices=["auto"] + list(DIGESTS))
    p.add_argument("--method", default="auto", choices=["auto", "post", "get"])
    p.add_argument(
        "--get-encoding",
        default="apple",
        choices=["apple", "percent"],
        help="GET message: raw base64 like macOS (default) or fully percent-encoded",
    )
    p.add_argument("--key-size", type=int, default=2048)
    p.add_argument("--request-ca", action="store_true", help="ask for CA:TRUE (bad input)")
    p.add_argument("--dns-san", action="append", default=[], help="request a DNS SAN")
    p.add_argument("--email-san", action="append", default=[], help="request an e-mail SAN")
    p.add_argument("--uri-san", action="append", default=[], help="request a URI SAN")
    p.add_argument("--save-csr", help="write the PKCS#10 request (DER) here")
    p.add_argument(
        "--padding-oracle",
        help="red-team probe: a saved PKIOperation body (someone else's request) whose "
        "EnvelopedData is re-sent under our own signature with chosen IVs, to recover "
        "plaintext bytes from the server's answers (CBC padding oracle)",
    )
    p.add_argument("--oracle-block", type=int, default=0, help="plaintext block to attack")
    p.add_argument(
        "--concurrent",
        type=int,
        default=1,
        help="red-team probe: send the request this many times at once",
    )
    p.add_argument(
        "--concurrent-distinct",
        action="store_true",
        help="with --concurrent: each copy a new key, CSR and transactionID",
    )
    p.add_argument("--oracle-bytes", type=int, default=1, help="bytes to recover (from the end)")
    p.add_argument("--key-in", help="PEM/DER private key for the CSR (default: new RSA key)")
    p.add_argument("--key-out", help="write the CSR private key here (PEM)")
    p.add_argument("--cert-out", help="write the issued certificate here (PEM)")
    p.add_argument("--renew-with-cert", help="sign with this existing certificate (renewal)")
    p.add_argument("--renew-with-key", help="private key of --renew-with-cert")
    p.add_argument(
        "--renewal-message-type",
        default=MSG_RENEWAL_REQ,
        choices=[MSG_RENEWAL_REQ, MSG_PKCS_REQ],
        help="17 = RenewalReq (RFC 8894); 19 = PKCSReq signed by the old cert (Apple re-certify)",
    )
    p.add_argument(
        "--challenge-on-renewal",
        action="store_true",
        help="keep --challenge in the CSR of a renewal (default: none)",
    )
    p.add_argument(
        "--self-signed-digest",
        default="sha1",
        choices=list(DIGESTS),
        help="signature hash of the temporary signer cert (Apple: SHA-1)",
    )
    p.add_argument("--transaction-id", help="override the transactionID")
    p.add_argument("--sender-nonce", help="override the senderNonce (hex, 16 bytes)")
    p.add_argument("--save-request", help="write the PKIOperation body (DER) here")
    p.add_argument(
        "--reuse-request",
        help="send this saved PKIOperation body again (needs --key-in, and "
        "--renew-with-key for a saved renewal)",
    )
    p.add_argument("--encrypt-to", help="encrypt the request to this certificate instead")
    p.add_argument(
        "--ca-certs",
        help="use these certificates (PEM) as the GetCACert answer instead of asking",
    )
    p.add_argument("--poll-count", type=int, default=0, help="CertPoll retries while PENDING")
    p.add_argument("--poll-interval", type=float, default=2.0)
    p.add_argument("--no-caps", action="store_true", help="skip GetCACaps (as if unanswered)")
    p.add_argument(
        "--allow-reply-cipher-mismatch",
        action="store_true",
        help="accept a reply encrypted with another algorithm than the request",
    )
    p.add_argument("--allow-issued-not-first", action="store_true")
    p.add_argument("--allow-no-client-auth", action="store_true")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = p.parse_args(argv)
    if args.sender_nonce and len(bytes.fromhex(args.sender_nonce)) != 16:
        p.error("--sender-nonce must be 16 bytes of hex")
    if args.reuse_request and not args.key_in:
        p.error("--reuse-request needs --key-in (the key of the saved request)")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = {
        "status": None,
        "fail_info": None,
        "http_status": None,
        "transaction_id": None,
        "cipher_in_reply": None,
        "digest_in_reply": None,
        "cert_serial": None,
        "cert_subject": None,
        "not_after": None,
    }
    try:
        code = run(args, result)
        message = "certificate issued"
    except ClientError as err:
        code = err.exit_code
        message = err.message
        result.update(err.extra)
        result["status"] = err.status
    except Exception as err:  # an unexpected bug or malformed input
        code = EXIT_OTHER
        message = f"{type(err).__name__}: {err}"
        result["status"] = "ERROR"
    result["exit_code"] = code
    result["message"] = message
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        stream = sys.stdout if code == EXIT_SUCCESS else sys.stderr
        print(f"{result['status']}: {message}", file=stream)
        for key in (
            "transaction_id",
            "cipher",
            "cipher_in_reply",
            "digest_in_reply",
            "fail_info_name",
            "cert_serial",
            "cert_subject",
            "not_after",
        ):
            if result.get(key) is not None:
                print(f"  {key}: {result[key]}", file=stream)
    return code


if __name__ == "__main__":
    sys.exit(main())
