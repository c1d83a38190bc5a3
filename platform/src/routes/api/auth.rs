//! `/api/v1/auth/...`: sign-up, login (with the MFA step), token refresh and logout, invitation
//! acceptance, email verification and password reset. These routes take no credential (they carry
//! their own proof); the tenant comes from the host.

pub mod email;
pub mod invitations;
pub mod login;
pub mod password;
pub mod signup;
pub mod token;
