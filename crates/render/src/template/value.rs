//! The values templates compute with: a JSON-like tree, modelled on what Go's `text/template` sees
//! when its data is a `map[string]interface{}` decoded from JSON.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::rc::Rc;

use super::gotime::GoTime;
use super::semver::Version as SemVersion;

/// Deepest nesting the printer, the JSON encoder, `set`'s copy and comparisons descend into.
/// (Building deeper values is cheap and harmless: containers are dropped iteratively.)
pub(crate) const MAX_VALUE_DEPTH: usize = 128;
/// Longest string a template may build (also the output limit).
pub(crate) const MAX_STRING: usize = 16 << 20;

const WORK_LIMIT: &str = "template execution exceeded its work limit";
/// Budget units a new map costs (a `BTreeMap` allocates a node of several hundred bytes).
pub(crate) const MAP_COST: u64 = 16;

thread_local! {
    /// Work left for the execution running on this thread. Every step of the executor and every
    /// node visited while printing, encoding, copying or comparing values costs one unit, so
    /// values that share structure exponentially (`$x = list $x $x`) cannot stall the driver.
    static BUDGET: Cell<u64> = const { Cell::new(u64::MAX) };
    /// Why the budget was cut to zero.
    static REASON: Cell<&'static str> = const { Cell::new(WORK_LIMIT) };
}

/// Sets the work budget of the execution starting on this thread.
pub(crate) fn budget_reset(units: u64) {
    BUDGET.with(|b| b.set(units));
    REASON.with(|r| r.set(WORK_LIMIT));
}

/// Spends `units`; false (and the budget stays at zero) once it is exhausted.
pub(crate) fn charge(units: u64) -> bool {
    BUDGET.with(|b| {
        let left = b.get();
        b.set(left.saturating_sub(units));
        left >= units
    })
}

/// Ends the execution for `reason` (reported by the executor at its next step).
pub(crate) fn budget_fail(reason: &'static str) {
    BUDGET.with(|b| b.set(0));
    REASON.with(|r| r.set(reason));
}

pub(crate) fn budget_exhausted() -> bool {
    BUDGET.with(|b| b.get() == 0)
}

pub(crate) fn budget_reason() -> &'static str {
    REASON.with(Cell::get)
}

/// Charges one node at `depth`; false when the budget is spent or the value is too deep.
pub(crate) fn visit(depth: usize) -> bool {
    if depth > MAX_VALUE_DEPTH {
        budget_fail("value nesting too deep");
        return false;
    }
    charge(1)
}

/// Moves the children of containers nobody else holds onto `stack`, so that dropping a deeply
/// nested value never recurses.
fn unnest(stack: &mut Vec<Value>) {
    while let Some(v) = stack.pop() {
        match v {
            Value::List(rc) => {
                if let Ok(mut list) = Rc::try_unwrap(rc) {
                    stack.append(&mut list.0);
                }
            }
            Value::Map(rc) => {
                if let Ok(mut map) = Rc::try_unwrap(rc) {
                    stack.extend(std::mem::take(map.0.get_mut()).into_values());
                }
            }
            _ => {}
        }
    }
}

/// The items of a list value (immutable, shared).
#[derive(Debug, Default)]
pub(crate) struct ListVal(Vec<Value>, Nil);

/// Whether a list is Go's nil slice, and of which type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Nil {
    #[default]
    No,
    /// A nil `[]interface {}` (`rest`, `initial`, `concat`).
    Any,
    /// A nil `[]string` (`regexFindAll`, `regexSplit`): `toStrings` hands it on as it is.
    Strings,
}

impl ListVal {
    /// Whether this is Go's nil slice (what sprig returns for some empty results): it prints
    /// as `[]` but JSON-encodes as `null`.
    pub(crate) fn is_nil_slice(&self) -> bool {
        self.1 != Nil::No
    }

    /// Whether this is a nil `[]string`.
    pub(crate) fn is_nil_strings(&self) -> bool {
        self.1 == Nil::Strings
    }
}

impl Deref for ListVal {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl Drop for ListVal {
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.0);
        unnest(&mut stack);
    }
}

/// The entries of a map value, shared by reference like a Go map: sprig's `set` changes it for
/// every holder.
#[derive(Debug, Default)]
pub(crate) struct MapVal(RefCell<BTreeMap<String, Value>>);

impl Deref for MapVal {
    type Target = RefCell<BTreeMap<String, Value>>;
    fn deref(&self) -> &RefCell<BTreeMap<String, Value>> {
        &self.0
    }
}

impl Drop for MapVal {
    fn drop(&mut self) {
        let mut stack: Vec<Value> = std::mem::take(self.0.get_mut()).into_values().collect();
        unnest(&mut stack);
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// Go's invalid `reflect.Value`: a missing map key, or `nil` once it went through a pipeline.
    /// Prints as `<no value>`.
    Missing,
    /// A `nil` stored in a map or list (JSON `null`), or `nil` handed to a function.
    Null,
    Bool(bool),
    /// Go `int` (also what we make of JSON integers).
    Int(i64),
    /// Go `int64`: what sprig's arithmetic returns. It computes and prints like an `int`, but Go
    /// refuses it for an `int` parameter, and `%T`, `typeOf`, `kindOf` name it.
    Int64(i64),
    /// Go `float64`.
    Float(f64),
    Str(String),
    List(Rc<ListVal>),
    Map(Rc<MapVal>),
    /// Go `time.Time` (sprig's date functions).
    Time(Rc<GoTime>),
    /// `*semver.Version` (sprig's `semver`).
    Version(Rc<SemVersion>),
}

impl Value {
    pub(crate) fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(ListVal(items, Nil::No)))
    }

    /// Go's nil slice: an empty list that JSON-encodes as `null`.
    pub(crate) fn nil_list() -> Value {
        Value::List(Rc::new(ListVal(Vec::new(), Nil::Any)))
    }

    /// Go's nil `[]string`.
    pub(crate) fn nil_strings() -> Value {
        Value::List(Rc::new(ListVal(Vec::new(), Nil::Strings)))
    }

    pub(crate) fn map(entries: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(MapVal(RefCell::new(entries))))
    }

    pub(crate) fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// Converts JSON; integers stay integers (as if the data came from Go structs with `int`
    /// fields), other numbers become `float64`.
    pub(crate) fn from_json(v: &serde_json::Value) -> Value {
        Self::convert_json(v, false)
    }

    /// Converts JSON the way Go's `json.Unmarshal` into `interface{}` does: every number is a
    /// `float64` (sprig's `fromJson`).
    pub(crate) fn from_json_floats(v: &serde_json::Value) -> Value {
        Self::convert_json(v, true)
    }

    fn convert_json(v: &serde_json::Value, floats: bool) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) if !floats => Value::Int(i),
                _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => Value::list(
                items
                    .iter()
                    .map(|i| Self::convert_json(i, floats))
                    .collect(),
            ),
            serde_json::Value::Object(m) => Value::map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Self::convert_json(v, floats)))
                    .collect(),
            ),
        }
    }

    /// Go's type name (`reflect.Type.String()`) of the dynamic value.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Missing | Value::Null => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Int64(_) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Time(_) => "time.Time",
            Value::Version(v) if v.by_value => "semver.Version",
            Value::Version(_) => "*semver.Version",
        }
    }

    pub(crate) fn is_nil(&self) -> bool {
        matches!(self, Value::Missing | Value::Null)
    }

    /// Go's `nil` interface turns into an invalid value at the end of each pipeline command.
    pub(crate) fn collapse_null(self) -> Value {
        match self {
            Value::Null => Value::Missing,
            v => v,
        }
    }

    /// Go's `isTrue` (templates' truthiness): false, 0, nil, and empty strings, lists and maps are
    /// false.
    pub(crate) fn is_true(&self) -> bool {
        match self {
            Value::Missing | Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) | Value::Int64(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            // A struct and a non-nil pointer.
            Value::Time(_) | Value::Version(_) => true,
        }
    }

    /// A copy that shares nothing with `self`: what `set` stores, so no map can contain itself.
    /// Costs one budget unit per node; an incomplete copy is returned once the budget is spent
    /// (the executor then fails).
    pub(crate) fn deep_clone(&self) -> Value {
        self.deep_clone_at(0, false)
    }

    /// sprig's `deepCopy` (mitchellh/copystructure): a deep copy in which a `*semver.Version`,
    /// whose fields are unexported, becomes a new zero version (`0.0.0`).
    pub(crate) fn copystructure(&self) -> Value {
        self.deep_clone_at(0, true)
    }

    fn deep_clone_at(&self, depth: usize, zero_versions: bool) -> Value {
        if !visit(depth) {
            return Value::Missing;
        }
        match self {
            Value::List(l) => Value::list(
                l.iter()
                    .map(|v| v.deep_clone_at(depth + 1, zero_versions))
                    .collect(),
            ),
            Value::Map(m) => {
                if !charge(MAP_COST - 1) {
                    return Value::Missing;
                }
                Value::map(
                    m.borrow()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.deep_clone_at(depth + 1, zero_versions)))
                        .collect(),
                )
            }
            Value::Version(v) if zero_versions => Value::Version(Rc::new(SemVersion {
                by_value: v.by_value,
                ..SemVersion::default()
            })),
            v => v.clone(),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_conversion_and_truth() {
        let v = Value::from_json(&serde_json::json!({"a": [1, 2.5, null, "x"], "b": {}}));
        let Value::Map(m) = &v else {
            panic!("not a map")
        };
        let m = m.borrow();
        let Some(Value::List(l)) = m.get("a") else {
            panic!("no list")
        };
        assert!(matches!(l[0], Value::Int(1)));
        assert!(matches!(l[1], Value::Float(f) if f == 2.5));
        assert!(matches!(l[2], Value::Null));
        assert!(!m["b"].is_true());
        assert!(v.is_true());
        assert!(matches!(
            Value::from_json_floats(&serde_json::json!(1)),
            Value::Float(_)
        ));
    }
}

#[cfg(test)]
mod drop_tests {
    use super::*;

    #[test]
    fn deep_values_drop_without_recursion() {
        let handle = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let mut v = Value::Int(0);
                for i in 0..200_000 {
                    v = if i % 2 == 0 {
                        Value::list(vec![v])
                    } else {
                        Value::map(BTreeMap::from([("k".to_owned(), v)]))
                    };
                }
                drop(v);
            })
            .expect("thread");
        handle.join().expect("no stack overflow");
    }
}
