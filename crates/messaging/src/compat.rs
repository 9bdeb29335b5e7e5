//! Offline schema compatibility: may a new version of a schema replace an old one?
//!
//! The verdict is apache-avro's [`SchemaCompatibility::can_read`] (the Avro specification's
//! schema resolution rules), and only [`Compatibility::Full`] passes: a `Partial` answer means
//! some data would fail to resolve, e.g. a union branch whose record changed incompatibly.
//! apache-avro's error does not say *where* in a large schema the problem is (a change deep in
//! one payload record surfaces as "union elements must match"), so [`check_compatibility`] also
//! walks both schemas side by side, matching named types by name, and reports each problem with
//! its path, e.g. `OrderEvent.payload<ItemAdded>.line.unitPriceMinor`.
//!
//! # Which direction
//!
//! The order events are replayed from the start of the topic by new read models (the new
//! schema must read old data: *backward*), and consumed by other teams who ship a copy of the
//! schema as their reader schema and upgrade on their own schedule (old schemas must read new
//! data: *forward*). The topic is checked [`CompatibilityMode::Full`], both directions, against
//! every released version. In Avro terms that allows adding or removing a field only when it
//! has a default, and widening a type only where both directions resolve.
//!
//! The price of FULL: a new event type (a new `payload` record) is not forward compatible, a
//! consumer on the old schema cannot decode it. Adding one means upgrading consumers first and
//! then releasing deliberately (relaxing the check for that release, or a new major namespace).

use apache_avro::Schema;
use apache_avro::schema::{ResolvedSchema, SchemaKind};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use std::collections::HashMap;
use std::fmt;

/// Which way data must flow between an old and a new schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompatibilityMode {
    /// The new schema reads data written with the old one.
    Backward,
    /// The old schema reads data written with the new one.
    Forward,
    /// Both.
    Full,
}

/// One reason two schemas are incompatible, located by path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incompatibility {
    /// `backward` (the new schema reading old data) or `forward` (the old reading new).
    pub direction: &'static str,
    /// Where, e.g. `OrderEvent.payload<ItemAdded>.line.unitPriceMinor`.
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.path, self.direction, self.reason)
    }
}

/// Checks that `new` may replace `old` under `mode`; on failure, every problem found.
pub fn check_compatibility(
    old: &Schema,
    new: &Schema,
    mode: CompatibilityMode,
) -> Result<(), Vec<Incompatibility>> {
    let mut problems = Vec::new();
    if matches!(mode, CompatibilityMode::Backward | CompatibilityMode::Full) {
        problems.extend(can_read(old, new, "backward"));
    }
    if matches!(mode, CompatibilityMode::Forward | CompatibilityMode::Full) {
        problems.extend(can_read(new, old, "forward"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Problems resolving data written with `writer` to `reader`.
fn can_read(writer: &Schema, reader: &Schema, direction: &'static str) -> Vec<Incompatibility> {
    let verdict = SchemaCompatibility::can_read(writer, reader);
    let (Ok(w_names), Ok(r_names)) = (names(writer), names(reader)) else {
        return vec![Incompatibility {
            direction,
            path: root_name(reader),
            reason: "a schema has unresolvable references".into(),
        }];
    };
    let mut walk = Walk {
        direction,
        w_names,
        r_names,
        problems: Vec::new(),
        visited: Vec::new(),
    };
    walk.compare(writer, reader, &root_name(reader));
    let mut problems = walk.problems;
    // The walk explains; apache-avro decides. Should the walk miss what apache-avro found, the
    // verdict still fails the check, with apache-avro's own words.
    match verdict {
        Ok(Compatibility::Full) => {}
        Ok(Compatibility::Partial) if problems.is_empty() => problems.push(Incompatibility {
            direction,
            path: root_name(reader),
            reason: "only partially compatible: some data written with the writer schema \
                     cannot be resolved"
                .into(),
        }),
        Err(e) if problems.is_empty() => problems.push(Incompatibility {
            direction,
            path: root_name(reader),
            reason: e.to_string(),
        }),
        _ => {}
    }
    problems
}

type Names<'s> = HashMap<String, &'s Schema>;

/// Every named type of `schema` by full name, to resolve references.
fn names(schema: &Schema) -> Result<Names<'_>, apache_avro::Error> {
    let resolved = ResolvedSchema::try_from(schema)?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(name, s)| (name.fullname(None), *s))
        .collect())
}

fn root_name(schema: &Schema) -> String {
    schema
        .name()
        .map_or_else(|| "<root>".to_string(), |n| n.name().to_string())
}

/// A side-by-side walk of a writer and a reader schema.
struct Walk<'s> {
    direction: &'static str,
    w_names: Names<'s>,
    r_names: Names<'s>,
    problems: Vec<Incompatibility>,
    /// Pairs of named types already compared (by full name), so recursive types end.
    visited: Vec<(String, String)>,
}

impl<'s> Walk<'s> {
    fn problem(&mut self, path: &str, reason: String) {
        self.problems.push(Incompatibility {
            direction: self.direction,
            path: path.to_string(),
            reason,
        });
    }

    /// A reference replaced by the named type it refers to.
    fn deref(names: &Names<'s>, schema: &'s Schema) -> &'s Schema {
        match schema {
            Schema::Ref { name } => names.get(&name.fullname(None)).copied().unwrap_or(schema),
            other => other,
        }
    }

    fn compare(&mut self, writer: &'s Schema, reader: &'s Schema, path: &str) {
        let writer = Self::deref(&self.w_names, writer);
        let reader = Self::deref(&self.r_names, reader);
        match (writer, reader) {
            (Schema::Record(w), Schema::Record(r)) => {
                let pair = (w.name.fullname(None), r.name.fullname(None));
                if self.visited.contains(&pair) {
                    return;
                }
                self.visited.push(pair);
                if w.name.name() != r.name.name() {
                    self.problem(
                        path,
                        format!(
                            "record {} is written but {} is expected",
                            w.name.name(),
                            r.name.name()
                        ),
                    );
                    return;
                }
                for r_field in &r.fields {
                    let field_path = format!("{path}.{}", r_field.name);
                    let w_field = std::iter::once(&r_field.name)
                        .chain(r_field.aliases.iter())
                        .find_map(|name| w.fields.iter().find(|f| &f.name == name));
                    match w_field {
                        Some(w_field) => {
                            self.compare(&w_field.schema, &r_field.schema, &field_path)
                        }
                        None if r_field.default.is_none() => self.problem(
                            &field_path,
                            format!(
                                "field `{}` is read but not written, and has no default",
                                r_field.name
                            ),
                        ),
                        None => {}
                    }
                }
            }
            (Schema::Union(w), Schema::Union(r)) => {
                for w_branch in w.variants() {
                    self.union_branch(w_branch, r.variants(), path);
                }
            }
            (Schema::Union(w), _) => {
                for w_branch in w.variants() {
                    self.compare(w_branch, reader, path);
                }
            }
            (_, Schema::Union(r)) => self.union_branch(writer, r.variants(), path),
            (Schema::Array(w), Schema::Array(r)) => {
                self.compare(&w.items, &r.items, &format!("{path}[]"))
            }
            (Schema::Map(w), Schema::Map(r)) => {
                self.compare(&w.types, &r.types, &format!("{path}{{}}"))
            }
            _ => self.leaf(writer, reader, path),
        }
    }

    /// A writer's union branch (or non-union value) must resolve to one of the reader's
    /// branches: the one of the same name for a named type, else any that apache-avro accepts.
    fn union_branch(&mut self, w_branch: &'s Schema, r_branches: &'s [Schema], path: &str) {
        let w_branch = Self::deref(&self.w_names, w_branch);
        if let Some(w_name) = w_branch.name() {
            let same = r_branches.iter().find(|r| {
                Self::deref(&self.r_names, r)
                    .name()
                    .is_some_and(|n| n.name() == w_name.name())
            });
            match same {
                Some(r_branch) => {
                    self.compare(w_branch, r_branch, &format!("{path}<{}>", w_name.name()))
                }
                None => self.problem(
                    path,
                    format!(
                        "union branch {} is written but the reader's union has no such branch",
                        w_name.name()
                    ),
                ),
            }
            return;
        }
        let fits = r_branches.iter().any(|r| {
            let r = Self::deref(&self.r_names, r);
            !r.is_named()
                && matches!(
                    SchemaCompatibility::can_read(w_branch, r),
                    Ok(Compatibility::Full)
                )
        });
        if !fits {
            self.problem(
                path,
                format!(
                    "union branch {:?} is written but no branch of the reader's union reads it",
                    SchemaKind::from(w_branch)
                ),
            );
        }
    }

    /// Primitives, logical types, enums and fixed: apache-avro's rules.
    fn leaf(&mut self, writer: &Schema, reader: &Schema, path: &str) {
        match SchemaCompatibility::can_read(writer, reader) {
            Ok(Compatibility::Full) => {}
            Ok(Compatibility::Partial) => self.problem(
                path,
                format!(
                    "{:?} is written, {:?} can read only some of its values",
                    SchemaKind::from(writer),
                    SchemaKind::from(reader)
                ),
            ),
            Err(_) => self.problem(
                path,
                format!(
                    "type changed: {:?} is written, {:?} is expected and cannot read it",
                    SchemaKind::from(writer),
                    SchemaKind::from(reader)
                ),
            ),
        }
    }
}
