//! Templates: one source per kind and locale (`templates/<kind>.<locale>.j2`), rendered twice
//! through a shared layout: as HTML (every value auto-escaped) and as plain text. The subject is
//! the source's `subject` block. A locale falls back `fr-CA` → `fr` → `en`. The tenant's name,
//! logo and colour come in as `brand`.

use std::collections::BTreeMap;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, State};
use serde::Serialize;

use crate::kinds::{KINDS, Kind};

/// The locales templates exist in (every kind has `en`).
pub const LOCALES: &[&str] = &["en", "fr"];

/// The fallback locale.
pub const DEFAULT_LOCALE: &str = "en";

macro_rules! sources {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const SOURCES: &[(&str, &str)] = sources![
    "invitation.en.j2",
    "invitation.fr.j2",
    "password_reset.en.j2",
    "password_reset.fr.j2",
    "verification.en.j2",
    "verification.fr.j2",
    "new_device_sign_in.en.j2",
    "new_device_sign_in.fr.j2",
    "billing_payment_failed.en.j2",
    "billing_reminder.en.j2",
    "billing_final_notice.en.j2",
    "billing_restored.en.j2",
    "announcement.en.j2",
];

/// The tenant's look.
#[derive(Clone, Debug, Serialize)]
pub struct Branding {
    pub name: String,
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub color: String,
}

impl Branding {
    /// The default look with the tenant's name.
    #[must_use]
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            logo_url: None,
            color: "#1f2937".into(),
        }
    }
}

/// A rendered message.
#[derive(Clone, Debug, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The locale actually used (after fallback).
    pub locale: String,
}

/// Rendering failed (a template bug or a missing variable: a job error, never a client's).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no template for kind `{0}`")]
    UnknownKind(String),
    #[error("rendering the template failed: {0}")]
    Template(#[from] minijinja::Error),
}

/// The compiled templates (cheap to clone).
#[derive(Clone, Debug)]
pub struct Templates {
    env: std::sync::Arc<Environment<'static>>,
}

/// `{{ button(label, url) }}`: a link styled as a button in HTML, `label: url` in text.
fn button(state: &State, label: String, url: String) -> Value {
    if matches!(state.auto_escape(), AutoEscape::Html) {
        let color = state
            .lookup("brand")
            .and_then(|b| b.get_attr("color").ok())
            .map(|c| c.to_string())
            .unwrap_or_default();
        let esc = |s: &str| minijinja::HtmlEscape(s).to_string();
        Value::from_safe_string(format!(
            "<a href=\"{}\" style=\"display:inline-block;padding:10px 18px;border-radius:6px;\
             background:{};color:#ffffff;text-decoration:none\">{}</a>",
            esc(&url),
            esc(&color),
            esc(&label)
        ))
    } else {
        Value::from(format!("{label}: {url}"))
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Compiles every template (a syntax error is a bug caught by the unit tests).
    #[must_use]
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.add_function("button", button);
        env.add_template("layout.html", include_str!("../templates/layout.html"))
            .expect("the HTML layout compiles");
        env.add_template("layout.txt", include_str!("../templates/layout.txt"))
            .expect("the text layout compiles");
        for (name, source) in SOURCES {
            let stem = name.trim_end_matches(".j2");
            for ext in ["html", "txt"] {
                env.add_template_owned(format!("{stem}.{ext}"), *source)
                    .expect("a message template compiles");
            }
        }
        Self {
            env: std::sync::Arc::new(env),
        }
    }

    /// The locale `wanted` falls back to for `kind`.
    fn locale_for(&self, kind: &Kind, wanted: Option<&str>) -> String {
        let mut candidates = Vec::new();
        if let Some(w) = wanted {
            candidates.push(w.to_owned());
            if let Some((lang, _)) = w.split_once('-') {
                candidates.push(lang.to_owned());
            }
        }
        candidates.push(DEFAULT_LOCALE.to_owned());
        candidates
            .into_iter()
            .find(|l| {
                self.env
                    .get_template(&format!("{}.{l}.txt", kind.name))
                    .is_ok()
            })
            .unwrap_or_else(|| DEFAULT_LOCALE.to_owned())
    }

    /// Renders `kind` for `locale` with `vars`, the tenant's `brand` and, for unsubscribable
    /// mail, its unsubscribe link.
    pub fn render(
        &self,
        kind: &str,
        locale: Option<&str>,
        brand: &Branding,
        vars: &BTreeMap<String, String>,
        unsubscribe_url: Option<&str>,
    ) -> Result<Rendered, RenderError> {
        let kind = Kind::find(kind).ok_or_else(|| RenderError::UnknownKind(kind.to_owned()))?;
        let locale = self.locale_for(kind, locale);
        let t_unsubscribe = if locale.starts_with("fr") {
            "Se désabonner"
        } else {
            "Unsubscribe"
        };
        let mut out = [String::new(), String::new(), String::new()];
        for (i, ext) in ["txt", "html"].into_iter().enumerate() {
            let mut ctx: BTreeMap<String, Value> = vars
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            ctx.insert("brand".into(), Value::from_serialize(brand));
            ctx.insert("locale".into(), Value::from(locale.as_str()));
            ctx.insert("layout".into(), Value::from(format!("layout.{ext}")));
            ctx.insert("t_unsubscribe".into(), Value::from(t_unsubscribe));
            ctx.insert(
                "unsubscribe_url".into(),
                unsubscribe_url.map_or(Value::from(false), Value::from),
            );
            let tmpl = self
                .env
                .get_template(&format!("{}.{locale}.{ext}", kind.name))?;
            #[expect(
                deprecated,
                reason = "its replacement (`render_captured`) lends the state immutably, and \
                          `render_block` needs it mutably"
            )]
            let (body, mut state) = tmpl.render_and_return_state(&ctx)?;
            if i == 0 {
                out[2] = state.render_block("subject")?.trim().to_owned();
            }
            out[i] = body;
        }
        let [text, html, subject] = out;
        Ok(Rendered {
            subject: subject.replace(['\r', '\n'], " "),
            html,
            text: text.trim().to_owned() + "\n",
            locale,
        })
    }

    /// [`Self::render`] with the kind's sample values (the preview route).
    pub fn preview(
        &self,
        kind: &str,
        locale: Option<&str>,
        brand: &Branding,
    ) -> Result<Rendered, RenderError> {
        let k = Kind::find(kind).ok_or_else(|| RenderError::UnknownKind(kind.to_owned()))?;
        let vars = k
            .sample
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        let unsubscribe = k
            .category
            .unsubscribable()
            .then_some("https://acme.example.com/u/sample");
        self.render(kind, locale, brand, &vars, unsubscribe)
    }
}

/// Every kind renders in every locale it has (checked at test time).
#[must_use]
pub fn kinds() -> &'static [Kind] {
    KINDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_previews_in_every_locale() {
        let t = Templates::new();
        for k in KINDS {
            for l in LOCALES {
                let r = t
                    .preview(k.name, Some(l), &Branding::named("Acme"))
                    .unwrap_or_else(|e| panic!("{} {l}: {e}", k.name));
                assert!(!r.subject.is_empty(), "{}", k.name);
                assert!(r.html.contains("<html"), "{}", k.name);
                assert!(!r.text.contains('<'), "{}: {}", k.name, r.text);
            }
        }
    }

    #[test]
    fn values_are_escaped_in_html_only() {
        let t = Templates::new();
        let mut vars = BTreeMap::new();
        vars.insert("headline".to_owned(), "Hi <b>you</b>".to_owned());
        vars.insert("body".to_owned(), "<script>alert(1)</script>".to_owned());
        let r = t
            .render(
                "announcement",
                None,
                &Branding::named("A&B <Co>"),
                &vars,
                None,
            )
            .expect("render");
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("A&amp;B &lt;Co&gt;"));
        assert!(r.text.contains("<script>alert(1)</script>"));
        assert_eq!(r.subject, "Hi <b>you</b>");
    }

    #[test]
    fn locale_falls_back() {
        let t = Templates::new();
        let b = Branding::named("Acme");
        assert_eq!(
            t.preview("invitation", Some("fr-CA"), &b)
                .expect("fr")
                .locale,
            "fr"
        );
        assert_eq!(
            t.preview("invitation", Some("de"), &b).expect("de").locale,
            "en"
        );
        assert_eq!(
            t.preview("billing_reminder", Some("fr"), &b)
                .expect("b")
                .locale,
            "en"
        );
        let fr = t.preview("invitation", Some("fr"), &b).expect("fr");
        assert!(fr.subject.starts_with("Invitation"), "{}", fr.subject);
    }
}
