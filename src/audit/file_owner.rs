//! Who owns an open file, by the operating system's own record: the uid on Unix,
//! the owner SID on Windows. The inbox attributes a user's records by it, never by
//! what a record claims or what a file is named.

use std::fs::File;

/// A file's owner: its account name (`uid:N`, or the SID's text, when it has
/// none) and, on Unix, its uid.
pub struct Owner {
    pub uid: Option<u64>,
    pub name: String,
}

impl Owner {
    /// What a file whose owner cannot be read is attributed to: its records are
    /// still collected (never left to pile up), marked as of no known user.
    pub fn unknown() -> Self {
        Owner {
            uid: None,
            name: "unknown".into(),
        }
    }
}

/// The owner of `file`.
#[cfg(unix)]
pub fn of(file: &File) -> Option<Owner> {
    use std::os::unix::fs::MetadataExt;
    let uid = file.metadata().ok()?.uid();
    Some(Owner {
        uid: Some(u64::from(uid)),
        name: user_name(uid),
    })
}

/// The account name of `uid` (`uid:N` when it has none).
#[cfg(unix)]
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids); getpwuid_r
    // fills it in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives the use of the
    // strings getpwuid_r points into it.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return format!("uid:{uid}");
    }
    // SAFETY: pw_name points to a NUL-terminated string inside `buf`.
    unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// The owner of `file`: its owner SID as `DOMAIN\user` (the SID's text when the
/// account cannot be looked up, e.g. a deleted one).
#[cfg(windows)]
pub fn of(file: &File) -> Option<Owner> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::{ERROR_SUCCESS, LocalFree};
    use windows_sys::Win32::Security::Authorization::{GetSecurityInfo, SE_FILE_OBJECT};
    use windows_sys::Win32::Security::{OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID};
    let mut sid: PSID = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: the handle is open for the call; the out pointers are valid. `sid`
    // points into `descriptor`, which is freed below, after its last use.
    let rc = unsafe {
        GetSecurityInfo(
            file.as_raw_handle(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut sid,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if rc != ERROR_SUCCESS {
        return None;
    }
    let name = if sid.is_null() {
        None
    } else {
        account_name(sid).or_else(|| sid_text(sid))
    };
    // SAFETY: `descriptor` was allocated by GetSecurityInfo for us to free.
    unsafe { LocalFree(descriptor) };
    Some(Owner {
        uid: None,
        name: name?,
    })
}

/// `DOMAIN\user` of a SID.
#[cfg(windows)]
fn account_name(sid: windows_sys::Win32::Security::PSID) -> Option<String> {
    use windows_sys::Win32::Security::{LookupAccountSidW, SID_NAME_USE};
    let (mut name_len, mut domain_len) = (257u32, 257u32);
    let (mut name, mut domain) = (Vec::new(), Vec::new());
    // Twice at most: a name longer than the first guess says how long it is.
    for _ in 0..2 {
        name = vec![0u16; name_len as usize];
        domain = vec![0u16; domain_len as usize];
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: the buffers are as long as the lengths say; `sid` is valid.
        let ok = unsafe {
            LookupAccountSidW(
                std::ptr::null(),
                sid,
                name.as_mut_ptr(),
                &mut name_len,
                domain.as_mut_ptr(),
                &mut domain_len,
                &mut kind,
            )
        };
        if ok != 0 {
            break;
        }
        // On ERROR_INSUFFICIENT_BUFFER the lengths now hold what is needed
        // (NUL included); any other failure leaves them or makes them no larger.
        if (name_len as usize) <= name.len() && (domain_len as usize) <= domain.len() {
            return None;
        }
    }
    if (name_len as usize) >= name.len() || (domain_len as usize) >= domain.len() {
        return None;
    }
    let name = String::from_utf16_lossy(&name[..name_len as usize]);
    let domain = String::from_utf16_lossy(&domain[..domain_len as usize]);
    Some(if domain.is_empty() {
        name
    } else {
        format!("{domain}\\{name}")
    })
}

/// A SID's text (`S-1-5-21-…`).
#[cfg(windows)]
fn sid_text(sid: windows_sys::Win32::Security::PSID) -> Option<String> {
    use windows_sys::Win32::Foundation::LocalFree;
    use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is valid; `text` receives a LocalAlloc'ed string we free.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 || text.is_null() {
        return None;
    }
    // SAFETY: `text` is NUL-terminated.
    let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
    // SAFETY: `len` u16s before the NUL are readable.
    let out = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: allocated by ConvertSidToStringSidW for us to free.
    unsafe { LocalFree(text.cast()) };
    Some(out)
}
