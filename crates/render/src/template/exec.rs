//! The executor: walks a tree with a data value, following Go's `text/template/exec.go`
//! (variable stack and scoping, field evaluation, argument checking, truthiness, range order,
//! error contexts).

use std::fmt::Display;

use super::fmt::{go_quote, print_action_value};
use super::funcs::{self, Func, Param};
use super::gotime::{GoTime, Loc};
use super::parse::{Arg, ArgKind, Branch, Command, List, Node, Number, Pipe, TemplateCall};
use super::value::{
    MAP_COST, MAX_STRING, Value, budget_exhausted, budget_reason, budget_reset, charge,
};
use super::{Template, TemplateError};

/// Go's `maxExecDepth` is 100000; ours is lower so recursion fits a thread's stack.
const MAX_TEMPLATE_DEPTH: usize = 100;
/// Deepest recursion of the evaluator (block bodies, nested pipelines and template calls
/// together), so hostile templates cannot exhaust the stack.
const MAX_NESTING: usize = 300;
/// Work budget for one execution: nodes walked, commands evaluated, range iterations, values
/// visited while printing, encoding, copying and comparing, and result sizes.
const MAX_STEPS: u64 = 2_000_000;
/// Largest output one execution may produce.
const MAX_OUTPUT: usize = MAX_STRING;

#[derive(Clone, Copy)]
enum At<'t> {
    None,
    Arg(&'t Arg),
    Cmd(&'t Command),
    Pipe(&'t Pipe),
    Node(&'t Node),
    Call(&'t TemplateCall),
}

#[derive(PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

type R<T> = Result<T, TemplateError>;

pub(crate) fn execute(tmpl: &Template, data: Value) -> R<String> {
    let Some(root) = tmpl.trees.trees.get(&tmpl.name) else {
        return Err(TemplateError::exec(format!(
            "template: {}: {} is an incomplete or empty template",
            tmpl.name,
            go_quote(&tmpl.name)
        )));
    };
    budget_reset(MAX_STEPS);
    let mut st = State {
        tmpl,
        name: &tmpl.name,
        vars: vec![("$", data.clone())],
        out: String::new(),
        depth: 0,
        nesting: 0,
        at: At::None,
    };
    st.walk_list(&data, root)?;
    st.step()?;
    Ok(st.out)
}

struct State<'t> {
    tmpl: &'t Template,
    /// The template being executed (a `define`d one inside `{{template}}`).
    name: &'t str,
    vars: Vec<(&'t str, Value)>,
    out: String,
    depth: usize,
    nesting: usize,
    at: At<'t>,
}

fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = src.get(..pos.min(src.len())).unwrap_or(src);
    let line = 1 + before.matches('\n').count();
    let col = match before.rfind('\n') {
        None => pos,
        Some(i) => pos - (i + 1),
    };
    (line, col)
}

impl<'t> State<'t> {
    fn errorf(&self, msg: impl Display) -> TemplateError {
        let (pos, ctx) = match self.at {
            At::None => {
                return TemplateError::exec(format!("template: {}: {msg}", self.name));
            }
            At::Arg(a) => (a.pos, a.to_string()),
            At::Cmd(c) => (c.pos, c.to_string()),
            At::Pipe(p) => (p.pos, p.to_string()),
            At::Call(t) => (
                t.pos,
                match &t.pipe {
                    Some(p) => format!("{{{{template {} {p}}}}}", go_quote(&t.name)),
                    None => format!("{{{{template {}}}}}", go_quote(&t.name)),
                },
            ),
            At::Node(n) => (node_pos(n), n.to_string()),
        };
        let (line, col) = line_col(&self.tmpl.src, pos);
        TemplateError::exec(format!(
            "template: {}:{line}:{col}: executing {} at <{ctx}>: {msg}",
            self.tmpl.name,
            go_quote(self.name)
        ))
    }

    fn step(&mut self) -> R<()> {
        self.charge(1)
    }

    fn charge(&mut self, units: u64) -> R<()> {
        if !charge(units) || budget_exhausted() {
            return Err(self.errorf(budget_reason()));
        }
        Ok(())
    }

    /// Charges what a command produced: strings by size, lists and maps by length (copies of
    /// them were made or are about to be).
    fn charge_value(&mut self, v: &Value) -> R<()> {
        let units = match v {
            Value::Str(s) => {
                if s.len() > MAX_STRING {
                    return Err(self.errorf("value exceeds the size limit"));
                }
                1 + s.len() as u64 / 64
            }
            Value::List(l) => 2 + l.len() as u64 / 8,
            Value::Map(m) => MAP_COST + m.borrow().len() as u64 / 8,
            _ => 1,
        };
        self.charge(units)
    }

    fn write(&mut self, s: &str) -> R<()> {
        if self.out.len() + s.len() > MAX_OUTPUT {
            return Err(self.errorf(format!("template output exceeded {} bytes", MAX_OUTPUT)));
        }
        self.out.push_str(s);
        Ok(())
    }

    // ---- variables ----

    fn push(&mut self, name: &'t str, v: Value) {
        self.vars.push((name, v));
    }

    fn var_value(&self, name: &str) -> R<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.errorf(format!("undefined variable: {name}")))
    }

    fn set_var(&mut self, name: &str, v: Value) -> R<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.errorf(format!("undefined variable: {name}"))),
        }
    }

    fn set_top_var(&mut self, n: usize, v: Value) {
        let len = self.vars.len();
        if let Some(slot) = len.checked_sub(n).and_then(|i| self.vars.get_mut(i)) {
            slot.1 = v;
        }
    }

    // ---- walking ----

    fn enter(&mut self) -> R<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.errorf("exceeded maximum nesting depth"));
        }
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value, list: &'t List) -> R<Flow> {
        self.enter()?;
        let r = self.walk_nodes(dot, list);
        self.nesting -= 1;
        r
    }

    fn walk_nodes(&mut self, dot: &Value, list: &'t List) -> R<Flow> {
        for node in list {
            let flow = self.walk(dot, node)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value, node: &'t Node) -> R<Flow> {
        self.at = At::Node(node);
        self.step()?;
        match node {
            Node::Text(t) => self.write(t)?,
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.write(&print_action_value(&v))?;
                }
            }
            Node::If(b) => return self.walk_if_or_with(dot, b, false),
            Node::With(b) => return self.walk_if_or_with(dot, b, true),
            Node::Range(b) => return self.walk_range(dot, b),
            Node::Template(t) => self.walk_template(dot, t)?,
            Node::Break(_) => return Ok(Flow::Break),
            Node::Continue(_) => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_if_or_with(&mut self, dot: &Value, b: &'t Branch, with: bool) -> R<Flow> {
        let mark = self.vars.len();
        let r = (|| {
            let val = self.eval_pipeline(dot, &b.pipe)?;
            if val.is_true() {
                if with {
                    self.walk_list(&val, &b.list)
                } else {
                    self.walk_list(dot, &b.list)
                }
            } else if let Some(e) = &b.else_list {
                self.walk_list(dot, e)
            } else {
                Ok(Flow::Normal)
            }
        })();
        self.vars.truncate(mark);
        r
    }

    fn walk_range(&mut self, dot: &Value, r: &'t Branch) -> R<Flow> {
        let mark = self.vars.len();
        let result = self.walk_range_inner(dot, r);
        self.vars.truncate(mark);
        result
    }

    /// Runs a `range`; a `continue` in its `else` list continues the enclosing `range`.
    fn walk_range_inner(&mut self, dot: &Value, r: &'t Branch) -> R<Flow> {
        let val = self.eval_pipeline(dot, &r.pipe)?;
        let inner_mark = self.vars.len();
        let ran = match &val {
            Value::List(items) => {
                let items = items.clone();
                for (i, elem) in items.iter().enumerate() {
                    let index = Value::Int(i64::try_from(i).unwrap_or(i64::MAX));
                    if self.one_iteration(r, inner_mark, index, elem.clone())? == Flow::Break {
                        break;
                    }
                }
                !items.is_empty()
            }
            Value::Map(m) => {
                let entries: Vec<(String, Value)> = m
                    .borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in &entries {
                    if self.one_iteration(r, inner_mark, Value::Str(k.clone()), v.clone())?
                        == Flow::Break
                    {
                        break;
                    }
                }
                !entries.is_empty()
            }
            Value::Int(n) | Value::Int64(n) => {
                let wide = matches!(val, Value::Int64(_));
                if r.pipe.decl.len() > 1 {
                    return Err(self.errorf(format!(
                        "can't use {n} to iterate over more than one variable"
                    )));
                }
                for i in 0..(*n).max(0) {
                    let v = if wide { Value::Int64(i) } else { Value::Int(i) };
                    if self.one_iteration(r, inner_mark, v.clone(), v)? == Flow::Break {
                        break;
                    }
                }
                *n > 0
            }
            Value::Missing | Value::Null => false,
            other => {
                return Err(self.errorf(format!(
                    "range can't iterate over {}",
                    print_action_value(other)
                )));
            }
        };
        if !ran && let Some(e) = &r.else_list {
            // As in Go, whose `walkRange` recovers a `break` (ending the else list) while a
            // `continue` goes on to the enclosing range's iteration.
            return Ok(match self.walk_list(dot, e)? {
                Flow::Break => Flow::Normal,
                flow => flow,
            });
        }
        Ok(Flow::Normal)
    }

    fn one_iteration(&mut self, r: &'t Branch, mark: usize, index: Value, elem: Value) -> R<Flow> {
        self.step()?;
        let decl = &r.pipe.decl;
        if !decl.is_empty() {
            if r.pipe.is_assign {
                if decl.len() > 1 {
                    self.set_var(&decl[0], index.clone())?;
                } else {
                    self.set_var(&decl[0], elem.clone())?;
                }
            } else {
                self.set_top_var(1, elem.clone());
            }
        }
        if decl.len() > 1 {
            if r.pipe.is_assign {
                self.set_var(&decl[1], elem.clone())?;
            } else {
                self.set_top_var(2, index);
            }
        }
        let flow = self.walk_list(&elem, &r.list);
        self.vars.truncate(mark);
        flow
    }

    fn walk_template(&mut self, dot: &Value, t: &'t TemplateCall) -> R<()> {
        self.at = At::Call(t);
        let Some(tree) = self.tmpl.trees.trees.get(&t.name) else {
            return Err(self.errorf(format!("template {} not defined", go_quote(&t.name))));
        };
        if self.depth >= MAX_TEMPLATE_DEPTH {
            return Err(self.errorf(format!(
                "exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})"
            )));
        }
        let new_dot = match &t.pipe {
            Some(p) => self.eval_pipeline(dot, p)?,
            None => Value::Missing,
        };
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
        let saved_name = std::mem::replace(&mut self.name, &t.name);
        self.depth += 1;
        let r = self.walk_list(&new_dot, tree);
        self.depth -= 1;
        self.name = saved_name;
        self.vars = saved_vars;
        r.map(|_| ())
    }

    // ---- evaluation ----

    fn eval_pipeline(&mut self, dot: &Value, pipe: &'t Pipe) -> R<Value> {
        self.at = At::Pipe(pipe);
        self.enter()?;
        let r = self.eval_pipeline_inner(dot, pipe);
        self.nesting -= 1;
        r
    }

    fn eval_pipeline_inner(&mut self, dot: &Value, pipe: &'t Pipe) -> R<Value> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            self.step()?;
            let v = self.eval_command(dot, cmd, value.take())?;
            self.charge_value(&v)?;
            value = Some(v.collapse_null());
        }
        let value = value.unwrap_or(Value::Missing);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone())?;
            } else {
                self.push(name, value.clone());
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Value>) -> R<()> {
        if args.len() > 1 || fin.is_some() {
            let first = args.first().map(ToString::to_string).unwrap_or_default();
            return Err(self.errorf(format!("can't give argument to non-function {first}")));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &'t Command, fin: Option<Value>) -> R<Value> {
        let Some(first) = cmd.args.first() else {
            return Err(self.errorf("empty command"));
        };
        match &first.kind {
            ArgKind::Field(idents) => {
                return self.eval_field_node(dot, first, idents, &cmd.args, fin);
            }
            ArgKind::Chain(node, fields) => {
                return self.eval_chain_node(dot, first, node, fields, &cmd.args, fin);
            }
            ArgKind::Identifier(name) => {
                return self.eval_function(dot, first, name, At::Cmd(cmd), &cmd.args, fin);
            }
            ArgKind::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                return self.eval_pipeline(dot, p);
            }
            ArgKind::Variable(idents) => {
                return self.eval_variable_node(dot, first, idents, &cmd.args, fin);
            }
            _ => {}
        }
        self.at = At::Arg(first);
        self.not_a_function(&cmd.args, &fin)?;
        match &first.kind {
            ArgKind::Bool(b) => Ok(Value::Bool(*b)),
            ArgKind::Dot => Ok(dot.clone()),
            ArgKind::Nil => Err(self.errorf("nil is not a command")),
            ArgKind::Number(n) => self.ideal_constant(first, n),
            ArgKind::Str(_, s) => Ok(Value::Str(s.clone())),
            _ => Err(self.errorf(format!(
                "can't evaluate command {}",
                go_quote(&first.to_string())
            ))),
        }
    }

    fn ideal_constant(&mut self, arg: &'t Arg, n: &Number) -> R<Value> {
        self.at = At::Arg(arg);
        let t = &n.text;
        let is_hex_int = t.len() > 2
            && t.starts_with('0')
            && matches!(t.as_bytes()[1], b'x' | b'X')
            && !t.contains(['p', 'P']);
        if let Some(f) = n.float
            && !is_hex_int
            && !t.starts_with('\'')
            && t.contains(['.', 'e', 'E', 'p', 'P'])
        {
            return Ok(Value::Float(f));
        }
        if let Some(i) = n.int {
            return Ok(Value::Int(i));
        }
        if n.complex {
            return Err(self.errorf(format!("complex numbers are not supported: {t}")));
        }
        if n.uint {
            return Err(self.errorf(format!("{t} overflows int")));
        }
        Ok(Value::Missing)
    }

    fn eval_field_node(
        &mut self,
        dot: &Value,
        field: &'t Arg,
        idents: &[String],
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        self.at = At::Arg(field);
        self.eval_field_chain(dot, dot.clone(), idents, args, fin)
    }

    fn eval_chain_node(
        &mut self,
        dot: &Value,
        chain: &'t Arg,
        node: &'t Arg,
        fields: &[String],
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        self.at = At::Arg(chain);
        if matches!(node.kind, ArgKind::Nil) {
            return Err(self.errorf(format!("indirection through explicit nil in {chain}")));
        }
        let pipe = self.eval_arg(dot, None, node)?;
        self.at = At::Arg(chain);
        self.eval_field_chain(dot, pipe, fields, args, fin)
    }

    fn eval_variable_node(
        &mut self,
        dot: &Value,
        var: &'t Arg,
        idents: &[String],
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        self.at = At::Arg(var);
        let value = self.var_value(idents.first().map_or("$", String::as_str))?;
        if idents.len() == 1 {
            self.not_a_function(args, &fin)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, &idents[1..], args, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value,
        receiver: Value,
        idents: &[String],
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let Some((last, init)) = idents.split_last() else {
            return Ok(receiver);
        };
        let mut receiver = receiver;
        let mut boxed = false;
        for name in init {
            receiver = self.eval_field(dot, name, &[], None, receiver, boxed)?;
            boxed = true;
        }
        self.eval_field(dot, last, args, fin, receiver, boxed)
    }

    /// One `.name` step. `boxed`: the receiver came out of a map or list, so Go sees its static
    /// type `interface {}` in messages.
    fn eval_field(
        &mut self,
        dot: &Value,
        name: &str,
        args: &'t [Arg],
        fin: Option<Value>,
        receiver: Value,
        boxed: bool,
    ) -> R<Value> {
        match receiver {
            Value::Missing => Ok(Value::Missing),
            Value::Null => {
                Err(self.errorf(format!("nil pointer evaluating interface {{}}.{name}")))
            }
            Value::Map(m) => {
                if args.len() > 1 || fin.is_some() {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                Ok(m.borrow().get(name).cloned().unwrap_or(Value::Missing))
            }
            Value::Time(_) | Value::Version(_) => self.eval_method(dot, name, args, fin, &receiver),
            other => {
                let typ = if boxed {
                    "interface {}"
                } else {
                    other.type_name()
                };
                Err(self.errorf(format!("can't evaluate field {name} in type {typ}")))
            }
        }
    }

    /// A method of `time.Time` or `*semver.Version` (the ones listed in docs/rendered-files.md);
    /// `args[0]` is the method's name, as in Go's `evalCall`.
    fn eval_method(
        &mut self,
        dot: &Value,
        name: &str,
        args: &'t [Arg],
        fin: Option<Value>,
        receiver: &Value,
    ) -> R<Value> {
        let takes: &[Param] = match (receiver, name) {
            (Value::Time(_), "Format") => &[Param::Str],
            (Value::Time(_), "Add") => &[Param::Duration],
            (Value::Time(_), "AddDate") => &[Param::Int, Param::Int, Param::Int],
            (Value::Time(_), "Before" | "After" | "Equal" | "Compare") => &[Param::Time],
            (
                Value::Version(v),
                "LessThan" | "LessThanEqual" | "GreaterThan" | "GreaterThanEqual" | "Equal"
                | "Compare",
            ) if !v.by_value => &[Param::Version],
            (Value::Version(_), "IncMajor" | "IncMinor" | "IncPatch") => &[],
            (Value::Version(_), "SetPrerelease" | "SetMetadata") => &[Param::Str],
            (Value::Version(v), "Original") if !v.by_value => &[],
            (
                Value::Time(_),
                "Year" | "Day" | "Hour" | "Minute" | "Second" | "Nanosecond" | "YearDay" | "Unix"
                | "UnixMilli" | "UnixMicro" | "UnixNano" | "Month" | "Weekday" | "UTC" | "Local"
                | "IsZero" | "String",
            )
            | (
                Value::Version(_),
                "Major" | "Minor" | "Patch" | "Prerelease" | "Metadata" | "String",
            ) => &[],
            _ => {
                return Err(self.errorf(format!(
                    "can't evaluate field {name} in type {}",
                    receiver.type_name()
                )));
            }
        };
        let given = args.len().saturating_sub(1) + usize::from(fin.is_some());
        if given != takes.len() {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want {} got {given}",
                takes.len()
            )));
        }
        let mut argv = Vec::with_capacity(given);
        for (arg, p) in args.iter().skip(1).zip(takes) {
            argv.push(self.eval_arg(dot, Some(*p), arg)?);
        }
        if let Some(fin) = fin {
            argv.push(self.validate_type(fin, takes.last().copied())?);
        }
        let int_arg = |i: usize| match argv.get(i) {
            Some(Value::Int(n) | Value::Int64(n)) => *n,
            _ => 0,
        };
        Ok(match receiver {
            Value::Time(t) => match name {
                "Format" => {
                    Value::Str(t.format(argv.first().and_then(Value::as_str).unwrap_or("")))
                }
                "Add" => Value::Time(std::rc::Rc::new(t.add(int_arg(0)))),
                "AddDate" => Value::Time(std::rc::Rc::new(t.add_date(
                    int_arg(0),
                    int_arg(1),
                    int_arg(2),
                ))),
                "Before" | "After" | "Equal" | "Compare" => {
                    let Some(Value::Time(u)) = argv.first() else {
                        return Ok(Value::Missing);
                    };
                    let c = t.compare(u);
                    match name {
                        "Before" => Value::Bool(c.is_lt()),
                        "After" => Value::Bool(c.is_gt()),
                        "Equal" => Value::Bool(c.is_eq()),
                        _ => Value::Int(c as i64),
                    }
                }
                "Unix" | "UnixMilli" | "UnixMicro" | "UnixNano" => {
                    Value::Int64(t.field(name).unwrap_or(0))
                }
                "Month" => Value::str(t.month_name()),
                "Weekday" => Value::str(t.weekday_name()),
                "UTC" => Value::Time(std::rc::Rc::new(GoTime {
                    mono: None,
                    ..t.with_loc(Loc::Utc)
                })),
                "Local" => Value::Time(std::rc::Rc::new(GoTime {
                    mono: None,
                    ..t.with_loc(Loc::Local)
                })),
                "IsZero" => Value::Bool(t.is_zero()),
                "String" => Value::Str(t.go_string()),
                _ => Value::Int(t.field(name).unwrap_or(0)),
            },
            Value::Version(v) => match name {
                "LessThan" | "LessThanEqual" | "GreaterThan" | "GreaterThanEqual" | "Equal"
                | "Compare" => {
                    let Some(Value::Version(o)) = argv.first() else {
                        if name == "Equal" {
                            return Ok(Value::Bool(false));
                        }
                        // A nil *Version: Go's method dereferences it and panics.
                        return Err(self.errorf(format!(
                            "error calling {name}: runtime error: invalid memory address or nil pointer dereference"
                        )));
                    };
                    let c = v.compare(o);
                    match name {
                        "LessThan" => Value::Bool(c.is_lt()),
                        "LessThanEqual" => Value::Bool(c.is_le()),
                        "GreaterThan" => Value::Bool(c.is_gt()),
                        "GreaterThanEqual" => Value::Bool(c.is_ge()),
                        "Equal" => Value::Bool(c.is_eq()),
                        _ => Value::Int(c as i64),
                    }
                }
                "IncMajor" | "IncMinor" | "IncPatch" => {
                    Value::Version(std::rc::Rc::new(v.inc(name)))
                }
                "SetPrerelease" | "SetMetadata" => {
                    let to = argv.first().and_then(Value::as_str).unwrap_or("");
                    match v.set(name, to) {
                        Ok(next) => Value::Version(std::rc::Rc::new(next)),
                        Err(e) => return Err(self.errorf(format!("error calling {name}: {e}"))),
                    }
                }
                "Major" => Value::Int64(v.major as i64),
                "Minor" => Value::Int64(v.minor as i64),
                "Patch" => Value::Int64(v.patch as i64),
                "Prerelease" => Value::str(v.pre.clone()),
                "Metadata" => Value::str(v.metadata.clone()),
                "Original" => Value::str(v.original.clone()),
                _ => Value::Str(v.go_string()),
            },
            _ => Value::Missing,
        })
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        ident: &'t Arg,
        name: &str,
        cmd: At<'t>,
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        self.at = At::Arg(ident);
        let Some(f) = funcs::lookup(name) else {
            return Err(self.errorf(format!("{} is not a defined function", go_quote(name))));
        };
        let args = args.get(1..).unwrap_or(&[]);
        self.eval_call(dot, f, cmd, args, fin)
    }

    fn eval_call(
        &mut self,
        dot: &Value,
        f: &'static Func,
        cmd: At<'t>,
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let name = f.name;
        let num_in = args.len() + usize::from(fin.is_some());
        let num_fixed = f.fixed.len();
        if f.variadic.is_some() {
            if num_in < num_fixed {
                return Err(self.errorf(format!(
                    "wrong number of args for {name}: want at least {num_fixed} got {}",
                    args.len()
                )));
            }
        } else if num_in != num_fixed {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want {num_fixed} got {num_in}"
            )));
        }
        let param =
            |i: usize| -> Param { f.fixed.get(i).copied().or(f.variadic).unwrap_or(Param::Any) };
        // `and` and `or` short-circuit.
        if name == "and" || name == "or" {
            let mut v = Value::Missing;
            for arg in args {
                v = self.eval_arg(dot, Some(Param::Reflect), arg)?;
                if v.is_true() == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(fin) = fin {
                v = fin;
            }
            return Ok(v);
        }
        let mut argv = Vec::with_capacity(num_in);
        for (i, arg) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, Some(param(i)), arg)?);
        }
        if let Some(fin) = fin {
            argv.push(self.validate_type(fin, Some(param(num_in - 1)))?);
        }
        if name == "call" {
            let callee = args.first().map(ToString::to_string).unwrap_or_default();
            self.at = cmd;
            let msg = match argv.first() {
                Some(v) if !v.is_nil() => {
                    format!("non-function {callee} of type {}", v.type_name())
                }
                _ => "call of nil".to_owned(),
            };
            return Err(self.errorf(format!("error calling call: {msg}")));
        }
        match (f.call)(&argv) {
            Ok(v) => {
                let at = std::mem::replace(&mut self.at, cmd);
                self.charge_value(&v)?;
                self.at = at;
                Ok(v)
            }
            Err(e) => {
                self.at = cmd;
                Err(self.errorf(format!("error calling {name}: {e}")))
            }
        }
    }

    /// Go's `validateType`: checks an evaluated value against a parameter type. `None` is
    /// "no type" (a chain's receiver).
    fn validate_type(&self, v: Value, param: Option<Param>) -> R<Value> {
        let Some(param) = param else {
            return Ok(v);
        };
        let expected = param.go_type();
        match (param, v) {
            (Param::Reflect, v) => Ok(v),
            (Param::Any, Value::Missing) => Ok(Value::Null),
            (Param::Any, v) => Ok(v),
            (Param::Map | Param::Version, Value::Missing) => Ok(Value::Missing),
            (_, Value::Missing) => Err(self.errorf(format!("invalid value; expected {expected}"))),
            (_, Value::Null) => Err(self.errorf(format!(
                "wrong type for value; expected {expected}; got interface {{}}"
            ))),
            (Param::Str, v @ Value::Str(_))
            | (Param::Int, v @ Value::Int(_))
            | (Param::Float, v @ Value::Float(_))
            | (Param::Bool, v @ Value::Bool(_))
            | (Param::Map, v @ Value::Map(_))
            | (Param::Time, v @ Value::Time(_))
            | (Param::Version, v @ Value::Version(_)) => Ok(v),
            (_, v) => Err(self.errorf(format!(
                "wrong type for value; expected {expected}; got {}",
                v.type_name()
            ))),
        }
    }

    fn eval_arg(&mut self, dot: &Value, param: Option<Param>, arg: &'t Arg) -> R<Value> {
        self.at = At::Arg(arg);
        let single = std::slice::from_ref(arg);
        let v = match &arg.kind {
            ArgKind::Dot => dot.clone(),
            ArgKind::Nil => {
                return match param {
                    Some(p) if p.can_be_nil() => Ok(match p {
                        Param::Any => Value::Null,
                        _ => Value::Missing,
                    }),
                    Some(p) => Err(self.errorf(format!("cannot assign nil to {}", p.go_type()))),
                    None => Ok(Value::Missing),
                };
            }
            ArgKind::Field(idents) => self.eval_field_node(dot, arg, idents, single, None)?,
            ArgKind::Variable(idents) => self.eval_variable_node(dot, arg, idents, &[], None)?,
            ArgKind::Pipe(p) => self.eval_pipeline(dot, p)?,
            ArgKind::Identifier(name) => {
                self.eval_function(dot, arg, name, At::Arg(arg), single, None)?
            }
            ArgKind::Chain(node, fields) => {
                self.eval_chain_node(dot, arg, node, fields, &[], None)?
            }
            ArgKind::Bool(b) => {
                return match param {
                    Some(Param::Bool | Param::Any | Param::Reflect) | None => Ok(Value::Bool(*b)),
                    Some(p) => Err(self.literal_mismatch(p, arg)),
                };
            }
            ArgKind::Number(n) => {
                return match param {
                    Some(Param::Duration) => match n.int {
                        Some(i) => Ok(Value::Int64(i)),
                        None => Err(self.errorf(format!("expected integer; found {arg}"))),
                    },
                    Some(Param::Int) => match n.int {
                        Some(i) => Ok(Value::Int(i)),
                        None => Err(self.errorf(format!("expected integer; found {arg}"))),
                    },
                    Some(Param::Float) => match n.float {
                        Some(f) => Ok(Value::Float(f)),
                        None => Err(self.errorf(format!("expected float; found {arg}"))),
                    },
                    Some(Param::Any | Param::Reflect) | None => self.ideal_constant(arg, n),
                    Some(p) => Err(self.literal_mismatch(p, arg)),
                };
            }
            ArgKind::Str(_, s) => {
                return match param {
                    Some(Param::Str | Param::Any | Param::Reflect) | None => {
                        Ok(Value::Str(s.clone()))
                    }
                    Some(p) => Err(self.literal_mismatch(p, arg)),
                };
            }
        };
        self.at = At::Arg(arg);
        self.validate_type(v, param)
    }

    fn literal_mismatch(&self, p: Param, arg: &Arg) -> TemplateError {
        match p {
            Param::Str => self.errorf(format!("expected string; found {arg}")),
            Param::Int => self.errorf(format!("expected integer; found {arg}")),
            Param::Float => self.errorf(format!("expected float; found {arg}")),
            Param::Bool => self.errorf(format!("expected bool; found {arg}")),
            _ => self.errorf(format!(
                "can't handle {arg} for arg of type {}",
                p.go_type()
            )),
        }
    }
}

fn node_pos(n: &Node) -> usize {
    match n {
        Node::Text(_) => 0,
        Node::Action(p) => p.pos,
        Node::If(b) | Node::With(b) | Node::Range(b) => b.pos,
        Node::Template(t) => t.pos,
        Node::Break(p) | Node::Continue(p) => *p,
    }
}
