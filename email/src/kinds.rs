//! The message kinds: which job kind sends which template, in which category. The category
//! decides what may withhold a message: security mail is never withheld by an unsubscribe (only
//! by a hard bounce, a complaint or an administrator), and only unsubscribable categories carry
//! `List-Unsubscribe` (RFC 8058).

/// What a message is for, as far as suppression is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// Password reset, address verification, sign-in alerts: needed to keep the account safe.
    Security,
    /// Billing notices about the account (dunning): account mail, not marketing.
    Account,
    /// Invitations from a tenant to someone who may not have an account: the recipient may refuse
    /// further invitations from that tenant.
    Invitations,
    /// A tenant's announcements to its users: non-essential.
    Marketing,
}

impl Category {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Account => "account",
            Self::Invitations => "invitations",
            Self::Marketing => "marketing",
        }
    }

    /// Parses a category name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "security" => Self::Security,
            "account" => Self::Account,
            "invitations" => Self::Invitations,
            "marketing" => Self::Marketing,
            _ => return None,
        })
    }

    /// Whether the recipient may unsubscribe (the message carries `List-Unsubscribe`).
    #[must_use]
    pub fn unsubscribable(self) -> bool {
        matches!(self, Self::Invitations | Self::Marketing)
    }
}

/// A message kind: its job kind is `email.<name>`, its template `<name>.<locale>.j2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    pub category: Category,
    /// The variables the template needs, with preview values.
    pub sample: &'static [(&'static str, &'static str)],
}

const BILLING: &[(&str, &str)] = &[
    ("tenant_name", "Acme Inc."),
    ("amount", "49.00"),
    ("currency", "EUR"),
    ("deadline", "2026-12-01"),
    ("pay_url", "https://billing.example.com/pay/inv_123"),
];

/// Every kind this platform sends.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "invitation",
        category: Category::Invitations,
        sample: &[(
            "link",
            "https://acme.example.com/accept-invitation?token=inv_sample",
        )],
    },
    Kind {
        name: "password_reset",
        category: Category::Security,
        sample: &[(
            "link",
            "https://acme.example.com/reset-password?token=sample",
        )],
    },
    Kind {
        name: "verification",
        category: Category::Security,
        sample: &[("link", "https://acme.example.com/verify-email?token=sample")],
    },
    Kind {
        name: "new_device_sign_in",
        category: Category::Security,
        sample: &[
            ("device", "Firefox on Linux"),
            ("ip", "203.0.113.7"),
            ("time", "2026-11-28 20:00 UTC"),
        ],
    },
    Kind {
        name: "billing_payment_failed",
        category: Category::Account,
        sample: BILLING,
    },
    Kind {
        name: "billing_reminder",
        category: Category::Account,
        sample: BILLING,
    },
    Kind {
        name: "billing_final_notice",
        category: Category::Account,
        sample: BILLING,
    },
    Kind {
        name: "billing_restored",
        category: Category::Account,
        sample: BILLING,
    },
    Kind {
        name: "announcement",
        category: Category::Marketing,
        sample: &[
            ("headline", "What's new this month"),
            ("body", "Projects can now be archived."),
        ],
    },
];

impl Kind {
    /// The kind named `name` (`invitation`) or by its job kind (`email.invitation`).
    #[must_use]
    pub fn find(name: &str) -> Option<&'static Kind> {
        let name = name.strip_prefix("email.").unwrap_or(name);
        KINDS.iter().find(|k| k.name == name)
    }

    /// Its job kind (`email.<name>`).
    #[must_use]
    pub fn job_kind(&self) -> String {
        format!("email.{}", self.name)
    }
}
