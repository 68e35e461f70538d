//! A restricted unpickler for `torch.save` state dicts, and the matching pickler.
//!
//! It interprets the pickle opcodes as data only: no code is ever run and no Python object is
//! built. The only globals it accepts are the few a state dict needs (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter` and the `torch.*Storage`
//! types); any other is an error naming it. The stack, the mark stack and the memo grow by at
//! most one entry per opcode read, so by at most the pickle's length; every length read from the
//! pickle is checked against the bytes that remain before anything is allocated; containers are
//! freed without recursion, so deep nesting cannot overflow the native stack.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Element type of a torch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dtype {
    /// torch's name: `float32`, `int64`, …
    pub name: &'static str,
    /// The storage class: `FloatStorage`, …
    pub storage: &'static str,
    pub size: usize,
}

const DTYPES: [Dtype; 12] = [
    Dtype { name: "float32", storage: "FloatStorage", size: 4 },
    Dtype { name: "float64", storage: "DoubleStorage", size: 8 },
    Dtype { name: "float16", storage: "HalfStorage", size: 2 },
    Dtype { name: "bfloat16", storage: "BFloat16Storage", size: 2 },
    Dtype { name: "int64", storage: "LongStorage", size: 8 },
    Dtype { name: "int32", storage: "IntStorage", size: 4 },
    Dtype { name: "int16", storage: "ShortStorage", size: 2 },
    Dtype { name: "int8", storage: "CharStorage", size: 1 },
    Dtype { name: "uint8", storage: "ByteStorage", size: 1 },
    Dtype { name: "bool", storage: "BoolStorage", size: 1 },
    Dtype { name: "complex64", storage: "ComplexFloatStorage", size: 8 },
    Dtype { name: "complex128", storage: "ComplexDoubleStorage", size: 16 },
];

pub(crate) const FLOAT32: Dtype = DTYPES[0];
pub(crate) const FLOAT64: Dtype = DTYPES[1];

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
#[derive(Debug)]
pub(crate) struct Storage {
    pub key: String,
    pub dtype: Dtype,
    pub numel: u64,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub storage: Rc<Storage>,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(Dtype),
}

/// Tuples, lists and dicts (as alternating keys and values) share one node type, whose `Drop`
/// frees nested nodes with a work list instead of recursion.
#[derive(Debug, Default)]
struct Node(RefCell<Vec<Value>>);

impl Drop for Node {
    fn drop(&mut self) {
        let mut pending = std::mem::take(self.0.get_mut());
        while let Some(v) = pending.pop() {
            if let Value::Tuple(n) | Value::List(n) | Value::Dict(n) = v {
                if let Ok(mut node) = Rc::try_unwrap(n) {
                    pending.append(node.0.get_mut());
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    None,
    /// `True` or `False` (a state dict needs no value: only `requires_grad` is one).
    Bool,
    Int(i64),
    /// A float (none matters to a state dict).
    Float,
    Str(Rc<str>),
    Tuple(Rc<Node>),
    List(Rc<Node>),
    Dict(Rc<Node>),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// What the value is, in Python's words, without its contents.
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "a bool",
            Value::Int(_) => "an int",
            Value::Float => "a float",
            Value::Str(_) => "a str",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class or function",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
    fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(Node(RefCell::new(items))))
    }
}

/// What a state-dict pickle holds: `(key, tensor)` in insertion order.
pub(crate) type Entries = Vec<(String, Rc<TensorRef>)>;

const ALLOWED: &str = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the torch.*Storage types";

fn resolve_global(module: &str, name: &str) -> Result<Global, String> {
    match (module, name) {
        ("collections", "OrderedDict") => return Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => return Ok(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => return Ok(Global::RebuildParameter),
        ("torch", s) => {
            if let Some(d) = DTYPES.iter().find(|d| d.storage == s) {
                return Ok(Global::Storage(*d));
            }
        }
        _ => {}
    }
    let hint = if module == "__main__" || name.chars().next().is_some_and(char::is_uppercase) {
        " (is this a whole pickled module? save net.state_dict() instead)"
    } else {
        ""
    };
    Err(format!("refusing to load the pickle: global '{module}.{name}' is not allowed; a checkpoint may only use {ALLOWED}{hint}"))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Our metadata JSON, found in the state dict's `_metadata` (see [`FM_METADATA_KEY`]).
    fm_metadata: Option<String>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("pickle is truncated: {what} of {n} bytes at byte {} runs past its end ({} bytes)", self.pos, self.data.len()))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn arg<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let b = self.take(N, what)?;
        b.try_into().map_err(|_| format!("pickle: short {what}"))
    }
    fn line(&mut self, what: &str) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| format!("pickle is truncated inside the {what} of a GLOBAL"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| format!("pickle: the {what} of a GLOBAL is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: u64) -> Result<Value, String> {
        let n = usize::try_from(n).map_err(|_| "pickle: string length overflows".to_string())?;
        let b = self.take(n, "a string")?;
        let s = std::str::from_utf8(b).map_err(|_| "pickle: a string is not valid UTF-8".to_string())?;
        Ok(Value::Str(s.into()))
    }
    fn pop(&mut self) -> Result<Value, String> {
        match self.marks.last() {
            Some(&m) if m >= self.stack.len() => Err(format!("pickle: stack underflow (at a mark) before byte {}", self.pos)),
            _ => self.stack.pop().ok_or_else(|| format!("pickle: stack underflow before byte {}", self.pos)),
        }
    }
    fn top(&self) -> Result<&Value, String> {
        self.stack.last().ok_or_else(|| format!("pickle: empty stack before byte {}", self.pos))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or_else(|| format!("pickle: no MARK before byte {}", self.pos))?;
        if m > self.stack.len() {
            return Err(format!("pickle: corrupt MARK before byte {}", self.pos));
        }
        Ok(self.stack.split_off(m))
    }
    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(format!("pickle: stack underflow before byte {}", self.pos));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }
    fn memo_get(&mut self, i: u32) -> Result<(), String> {
        let v = self.memo.get(&i).ok_or_else(|| format!("pickle: memo entry {i} is read before it is written"))?.clone();
        self.stack.push(v);
        Ok(())
    }
    fn memo_put(&mut self, i: u32) -> Result<(), String> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }
    fn extend(&mut self, what: &str, items: Vec<Value>) -> Result<(), String> {
        match self.top()? {
            Value::List(n) if what == "APPENDS" => n.0.borrow_mut().extend(items),
            Value::Dict(n) if what == "SETITEMS" => {
                if !items.len().is_multiple_of(2) {
                    return Err("pickle: SETITEMS with an odd number of items".into());
                }
                n.0.borrow_mut().extend(items)
            }
            other => return Err(format!("pickle: {what} on {}", other.kind())),
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let [op] = self.arg::<1>("an opcode")?;
            match op {
                0x80 => {
                    let [p] = self.arg::<1>("the protocol")?;
                    if p > 5 {
                        return Err(format!("pickle protocol {p} is not supported"));
                    }
                }
                0x95 => {
                    self.arg::<8>("a frame length")?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Bool),
                b'J' => {
                    let v = i32::from_le_bytes(self.arg("a BININT")?);
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let [v] = self.arg::<1>("a BININT1")?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.arg("a BININT2")?);
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.arg::<1>("a LONG1 length")?[0] as u64 } else { u32::from_le_bytes(self.arg("a LONG4 length")?) as u64 };
                    if n > 8 {
                        return Err(format!("pickle: an integer of {n} bytes at byte {at} does not fit in 64 bits"));
                    }
                    let b = self.take(n as usize, "an integer")?;
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
                    buf[..b.len()].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    self.arg::<8>("a BINFLOAT")?;
                    self.stack.push(Value::Float);
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.arg("a string length")?);
                    let v = self.string(n as u64)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let [n] = self.arg::<1>("a string length")?;
                    let v = self.string(n as u64)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.arg("a string length")?);
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b')' => self.stack.push(Value::tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::tuple(items));
                }
                0x85..=0x87 => {
                    let items = self.pop_n((op - 0x84) as usize)?;
                    self.stack.push(Value::tuple(items));
                }
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(Node(RefCell::new(items)))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend("APPENDS", vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend("APPENDS", items)?;
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Rc::default()));
                    self.extend("SETITEMS", items)?;
                }
                b's' => {
                    let items = self.pop_n(2)?;
                    self.extend("SETITEMS", items)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend("SETITEMS", items)?;
                }
                b'c' => {
                    let module = self.line("module")?;
                    let name = self.line("name")?;
                    self.stack.push(Value::Global(resolve_global(module, name)?));
                }
                b'i' => {
                    // INST: an old-style instance; never allowed, but named like a global.
                    let module = self.line("module")?;
                    let name = self.line("name")?;
                    resolve_global(module, name)?;
                    return Err(format!("pickle: opcode INST at byte {at} is not supported"));
                }
                0x93 => {
                    let [m, n] = <[Value; 2]>::try_from(self.pop_n(2)?).map_err(|_| "pickle: STACK_GLOBAL")?;
                    match (m, n) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(resolve_global(&m, &n)?)),
                        _ => return Err(format!("pickle: STACK_GLOBAL at byte {at} without two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let [f, args] = <[Value; 2]>::try_from(self.pop_n(2)?).map_err(|_| "pickle: REDUCE")?;
                    let v = reduce(f, args).map_err(|e| format!("{e} (at byte {at})"))?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    match (self.top()?, state) {
                        // The `_metadata` attribute torch sets on a state dict: only our entry
                        // in it is read (see [`Writer::state_dict`]).
                        (Value::Dict(_), Value::Dict(attrs)) => {
                            if let Some(Value::Str(json)) =
                                lookup(&attrs, "_metadata").and_then(|m| lookup_dict(&m, "")).and_then(|root| lookup_dict(&root, FM_METADATA_KEY))
                            {
                                self.fm_metadata = Some(json.to_string());
                            }
                        }
                        (target, state) => return Err(format!("pickle: BUILD of {} with {} at byte {at} is not supported", target.kind(), state.kind())),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid).map_err(|e| format!("{e} (at byte {at})"))?;
                    self.stack.push(v);
                }
                b'q' => {
                    let [i] = self.arg::<1>("a memo index")?;
                    self.memo_put(i as u32)?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.arg("a memo index")?);
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| "pickle: memo overflow")?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let [i] = self.arg::<1>("a memo index")?;
                    self.memo_get(i as u32)?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.arg("a memo index")?);
                    self.memo_get(i)?;
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} ('{}') at byte {at} is not supported by this restricted unpickler",
                        (other as char).escape_default()
                    ))
                }
            }
        }
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    let Value::Tuple(n) = v else { return Err(format!("_rebuild_tensor_v2: {what} is {}, not a tuple", v.kind())) };
    n.0.borrow()
        .iter()
        .map(|x| match x {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            Value::Int(i) => Err(format!("_rebuild_tensor_v2: {what} holds a negative value {i}")),
            other => Err(format!("_rebuild_tensor_v2: {what} holds {}, not an int", other.kind())),
        })
        .collect()
}

fn reduce(f: Value, args: Value) -> Result<Value, String> {
    let Value::Tuple(args) = args else { return Err(format!("pickle: REDUCE with {} as arguments", args.kind())) };
    let args = args.0.borrow();
    match f {
        Value::Global(Global::OrderedDict) if args.is_empty() => Ok(Value::Dict(Rc::default())),
        Value::Global(Global::RebuildTensorV2) if args.len() >= 4 => {
            let Value::Storage(storage) = &args[0] else { return Err(format!("_rebuild_tensor_v2: first argument is {}, not a storage", args[0].kind())) };
            let Value::Int(offset) = args[1] else { return Err(format!("_rebuild_tensor_v2: storage offset is {}, not an int", args[1].kind())) };
            let offset = u64::try_from(offset).map_err(|_| format!("_rebuild_tensor_v2: negative storage offset {offset}"))?;
            let size = ints(&args[2], "the size")?;
            let stride = ints(&args[3], "the stride")?;
            if size.len() != stride.len() {
                return Err(format!("_rebuild_tensor_v2: size {size:?} and stride {stride:?} differ in length"));
            }
            Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, size, stride })))
        }
        Value::Global(Global::RebuildParameter) if !args.is_empty() => match &args[0] {
            t @ Value::Tensor(_) => Ok(t.clone()),
            other => Err(format!("_rebuild_parameter of {}, not a tensor", other.kind())),
        },
        Value::Global(g) => Err(format!("pickle: calling {g:?} with {} arguments is not supported", args.len())),
        other => Err(format!("pickle: REDUCE calls {}", other.kind())),
    }
}

fn persistent_load(pid: Value) -> Result<Value, String> {
    let Value::Tuple(pid) = pid else { return Err(format!("pickle: persistent id is {}, not a tuple", pid.kind())) };
    let pid = pid.0.borrow();
    match &pid[..] {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)] if &**tag == "storage" => {
            let numel = u64::try_from(*numel).map_err(|_| format!("storage '{key}' has a negative size {numel}"))?;
            Ok(Value::Storage(Rc::new(Storage { key: key.to_string(), dtype: *dtype, numel })))
        }
        _ => Err("pickle: unsupported persistent id (expected ('storage', torch.<Type>Storage, key, location, numel))".into()),
    }
}

/// The value of the last `key` entry of a dict's items (alternating keys and values).
fn lookup(dict: &Node, key: &str) -> Option<Value> {
    dict.0.borrow().chunks_exact(2).rev().find(|kv| matches!(&kv[0], Value::Str(k) if &**k == key)).map(|kv| kv[1].clone())
}

fn lookup_dict(v: &Value, key: &str) -> Option<Value> {
    match v {
        Value::Dict(d) => lookup(d, key),
        _ => None,
    }
}

/// Our entry in the per-module metadata of the root module (`state_dict._metadata[""]`): the
/// checkpoint metadata as JSON. PyTorch keeps `_metadata` through `torch.load` and `torch.save`
/// of the dict, and `load_state_dict` ignores keys it does not know.
pub(crate) const FM_METADATA_KEY: &str = "fm_metadata";

/// Runs the pickle of a state dict: the `(key, tensor)` entries of its top-level dict, and
/// our metadata JSON when its `_metadata` holds it.
pub(crate) fn load(data: &[u8]) -> Result<(Entries, Option<String>), String> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), fm_metadata: None };
    let top = m.run()?;
    let Value::Dict(dict) = top else { return Err(format!("the pickle holds {}, not a state dict (an OrderedDict of tensors)", top.kind())) };
    let items = dict.0.borrow();
    let mut out: Entries = Vec::new();
    for pair in items.chunks_exact(2) {
        let Value::Str(key) = &pair[0] else { return Err(format!("state dict key is {}, not a str", pair[0].kind())) };
        let Value::Tensor(t) = &pair[1] else {
            // A training checkpoint ({'model': state_dict, 'optimizer': …, 'epoch': …}) is the usual case.
            let hint = if matches!(pair[1], Value::Dict(_)) {
                format!(": save the state dict inside it alone, e.g. torch.save(ckpt['{key}'], path)")
            } else {
                String::new()
            };
            return Err(format!("state dict entry '{key}' is {}, not a tensor{hint}", pair[1].kind()));
        };
        match out.iter_mut().find(|(k, _)| **k == **key) {
            Some(slot) => slot.1 = t.clone(),
            None => out.push((key.to_string(), t.clone())),
        }
    }
    Ok((out, m.fm_metadata.take()))
}

/// Pickle writer: protocol 2, the layout `torch.save(state_dict)` produces.
#[derive(Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn str(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: u64) {
        match i32::try_from(v) {
            Ok(v) => {
                self.0.push(b'J');
                self.0.extend_from_slice(&v.to_le_bytes());
            }
            Err(_) => {
                // LONG1 of 8 bytes, two's complement: sizes stay below 2^63.
                self.0.extend_from_slice(&[0x8a, 8]);
                self.0.extend_from_slice(&v.min(i64::MAX as u64).to_le_bytes());
            }
        }
    }
    fn ints(&mut self, vs: &[u64]) {
        self.0.push(b'(');
        vs.iter().for_each(|&v| self.int(v));
        self.0.push(b't');
    }

    /// An `OrderedDict` of float32 contiguous tensors, each in its own storage `key`:
    /// `(name, key, shape)`, with `metadata` (JSON) as `_metadata[""]["fm_metadata"]`.
    pub fn state_dict<'s>(entries: impl IntoIterator<Item = (&'s str, String, &'s [u64])>, metadata: Option<&str>) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.extend_from_slice(&[0x80, 2]);
        w.global("collections", "OrderedDict");
        w.0.extend_from_slice(b")R(");
        for (name, key, shape) in entries {
            let numel: u64 = shape.iter().product();
            let mut stride = vec![1u64; shape.len()];
            for i in (0..shape.len().saturating_sub(1)).rev() {
                stride[i] = stride[i + 1] * shape[i + 1].max(1);
            }
            w.str(name);
            w.global("torch._utils", "_rebuild_tensor_v2");
            w.0.extend_from_slice(b"((");
            w.str("storage");
            w.global("torch", "FloatStorage");
            w.str(&key);
            w.str("cpu");
            w.int(numel);
            w.0.extend_from_slice(b"tQ");
            w.int(0);
            w.ints(shape);
            w.ints(&stride);
            w.0.push(0x89);
            w.global("collections", "OrderedDict");
            w.0.extend_from_slice(b")RtR");
        }
        w.0.push(b'u');
        if let Some(json) = metadata {
            // BUILD the dict with {'_metadata': OrderedDict({'': {FM_METADATA_KEY: json}})}.
            w.0.push(b'}');
            w.str("_metadata");
            w.global("collections", "OrderedDict");
            w.0.extend_from_slice(b")R(");
            w.str("");
            w.0.extend_from_slice(b"}(");
            w.str(FM_METADATA_KEY);
            w.str(json);
            w.0.extend_from_slice(b"uusb");
        }
        w.0.push(b'.');
        w.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_freed_without_recursion() {
        // 200,000 nested one-tuples: would overflow a test thread's stack if dropped recursively.
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85, 200_000));
        p.push(b'.');
        let err = load(&p).unwrap_err();
        assert!(err.contains("not a state dict"), "{err}");
    }

    #[test]
    fn the_writers_pickle_reads_back() {
        let shape = [3u64, 2];
        let p = Writer::state_dict([("w", "0".to_string(), &shape[..])], Some("{}"));
        let (e, metadata) = load(&p).unwrap();
        assert_eq!(metadata.as_deref(), Some("{}"));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "w");
        assert_eq!(e[0].1.size, [3, 2]);
        assert_eq!(e[0].1.stride, [2, 1]);
        assert_eq!(e[0].1.storage.numel, 6);
    }
}
