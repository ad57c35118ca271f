//! The store's file format: one line per dependency, tab-separated fields
//! with escapes, classes by a stable identity (explicit name, or kind and
//! creation site), so processes of one run agree on them. Read back line by
//! line, each line bounded, so that a damaged line costs only itself.

use super::*;

/// One dependency as the store keeps it.
#[derive(Clone, Debug)]
pub(crate) struct StoredDependency {
    pub(crate) from: LockClass,
    pub(crate) to: LockClass,
    pub(crate) held_as: Access,
    pub(crate) held_at: Site,
    pub(crate) waited_as: Access,
    pub(crate) waited_at: Site,
    pub(crate) pid: u32,
    pub(crate) test: Option<String>,
    pub(crate) spans: Vec<String>,
    /// When it was written: nanoseconds since the Unix epoch (0: unknown).
    pub(crate) written: u64,
}

/// The stable identity of a class across processes.
pub(crate) fn identity(class: &LockClass) -> String {
    format!(
        "{}|{}|{}",
        kind_code(class.kind),
        class.subclass,
        class.name
    )
}

fn kind_code(kind: ClassKind) -> u8 {
    match kind {
        ClassKind::Mutex => 1,
        ClassKind::RwLock => 2,
        ClassKind::Semaphore => 3,
        ClassKind::WorkQueue => 4,
        ClassKind::Task => 5,
        ClassKind::Channel => 6,
        ClassKind::StdMutex => 7,
        ClassKind::StdRwLock => 8,
        ClassKind::ParkingLotMutex => 9,
        ClassKind::ParkingLotRwLock => 10,
        ClassKind::Oneshot => 11,
        ClassKind::Notify => 12,
        ClassKind::Watch => 13,
        ClassKind::Barrier => 14,
        ClassKind::Messages => 15,
    }
}

fn kind_of_code(code: &str) -> Option<ClassKind> {
    Some(match code {
        "1" => ClassKind::Mutex,
        "2" => ClassKind::RwLock,
        "3" => ClassKind::Semaphore,
        "4" => ClassKind::WorkQueue,
        "5" => ClassKind::Task,
        "6" => ClassKind::Channel,
        "7" => ClassKind::StdMutex,
        "8" => ClassKind::StdRwLock,
        "9" => ClassKind::ParkingLotMutex,
        "10" => ClassKind::ParkingLotRwLock,
        "11" => ClassKind::Oneshot,
        "12" => ClassKind::Notify,
        "13" => ClassKind::Watch,
        "14" => ClassKind::Barrier,
        "15" => ClassKind::Messages,
        _ => return None,
    })
}

fn access_of_code(code: &str) -> Option<Access> {
    Some(match code.parse::<u8>().ok()? {
        1 => Access::Lock,
        2 => Access::Read,
        3 => Access::Write,
        4 => Access::Permits,
        5 => Access::RunWork,
        6 => Access::RunTask,
        7 => Access::Flush,
        8 => Access::Destroy,
        9 => Access::Join,
        10 => Access::Await,
        11 => Access::Send,
        12 => Access::Receive,
        13 => Access::Event,
        14 => Access::Signal,
        _ => return None,
    })
}

/// Escapes tabs, newlines, backslashes and the span separator.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1f}' => out.push_str("\\u"),
            c => out.push(c),
        }
    }
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'u' => '\u{1f}',
            _ => return None,
        });
    }
    Some(out)
}

fn parse_site(text: &str) -> Option<Site> {
    let mut parts = text.rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    Some(Site::new(file.to_string(), line, column))
}

impl StoredDependency {
    /// The record as one line (with its `\n`).
    pub(crate) fn to_line(&self) -> String {
        let mut line = String::from("D");
        for class in [&self.from, &self.to] {
            line.push('\t');
            line.push_str(&kind_code(class.kind).to_string());
            line.push('\t');
            line.push_str(&class.subclass.to_string());
            line.push('\t');
            escape(&class.name, &mut line);
            line.push('\t');
            escape(&class.created_at.to_string(), &mut line);
        }
        for (access, site) in [
            (self.held_as, &self.held_at),
            (self.waited_as, &self.waited_at),
        ] {
            line.push('\t');
            line.push_str(&(access as u8).to_string());
            line.push('\t');
            escape(&site.to_string(), &mut line);
        }
        line.push('\t');
        escape(self.test.as_deref().unwrap_or(""), &mut line);
        line.push('\t');
        for (i, span) in self.spans.iter().enumerate() {
            if i > 0 {
                line.push('\u{1f}');
            }
            escape(span, &mut line);
        }
        line.push('\t');
        line.push_str(&self.written.to_string());
        line.push('\n');
        line
    }

    /// A record from one line (without its `\n`), written by process `pid`.
    pub(crate) fn from_line(line: &str, pid: u32) -> Option<StoredDependency> {
        let fields: Vec<&str> = line.split('\t').collect();
        // 16 fields; 15 in files written before the write time was added.
        if !(fields.len() == 15 || fields.len() == 16) || fields[0] != "D" {
            return None;
        }
        let written = match fields.get(15) {
            Some(field) => field.parse().ok()?,
            None => 0,
        };
        let class = |at: usize| -> Option<LockClass> {
            Some(LockClass {
                kind: kind_of_code(fields[at])?,
                subclass: fields[at + 1].parse().ok()?,
                name: unescape(fields[at + 2])?.into(),
                created_at: parse_site(&unescape(fields[at + 3])?)?,
                type_name: None,
            })
        };
        let test = unescape(fields[13])?;
        let spans = if fields[14].is_empty() {
            Vec::new()
        } else {
            fields[14]
                .split('\u{1f}')
                .map(unescape)
                .collect::<Option<Vec<_>>>()?
        };
        Some(StoredDependency {
            from: class(1)?,
            to: class(5)?,
            held_as: access_of_code(fields[9])?,
            held_at: parse_site(&unescape(fields[10])?)?,
            waited_as: access_of_code(fields[11])?,
            waited_at: parse_site(&unescape(fields[12])?)?,
            pid,
            test: (!test.is_empty()).then_some(test),
            spans,
            written,
        })
    }
}

/// The longest line read: longer ones are damaged (a record is a few
/// hundred bytes), and skipped without being kept in memory.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// What a store file holds: its records, and how many lines were damaged.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) records: Vec<StoredDependency>,
    /// The cycles the writing process reported, each by the sorted
    /// identities of its classes (a `C` line).
    pub(crate) cycles: Vec<Vec<String>>,
    pub(crate) damaged: usize,
}

/// A reported cycle as one `C` line: the sorted identities of its classes.
pub(crate) fn cycle_line(signature: &[String]) -> String {
    let mut line = String::from("C");
    for identity in signature {
        line.push('\t');
        escape(identity, &mut line);
    }
    line.push('\n');
    line
}

/// A `C` line (without its `\n`) back into its signature.
fn cycle_of_line(line: &str) -> Option<Vec<String>> {
    let mut fields = line.split('\t');
    if fields.next()? != "C" {
        return None;
    }
    let signature = fields.map(unescape).collect::<Option<Vec<_>>>()?;
    (!signature.is_empty()).then_some(signature)
}

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// Ended by `\n`; in the buffer, without it.
    Whole,
    /// Ended by `\n`, longer than [`MAX_LINE_BYTES`]: not kept.
    TooLong,
    /// Cut by the end of the input: still being written.
    Unfinished,
}

/// Reads the next line of `input` into `line` (cleared first), keeping at
/// most [`MAX_LINE_BYTES`] of it; `None` at the end of the input.
pub(crate) fn read_line(
    input: &mut impl std::io::BufRead,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Line>> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(Line::Unfinished));
        }
        any = true;
        let end = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(end.is_some());
        input.consume(used);
        if end.is_some() {
            return Ok(Some(if too_long { Line::TooLong } else { Line::Whole }));
        }
    }
}

/// The records of a store file written by process `pid`: its header line,
/// then one record per line. A damaged line (not UTF-8, too long, not a
/// record) is counted and skipped; a last line without its `\n` is still
/// being written and is ignored; a file without the header is not a store
/// file. A read error ends the file there.
pub(crate) fn read_records(
    mut input: impl std::io::BufRead,
    pid: u32,
) -> Result<Parsed, &'static str> {
    let mut line = Vec::new();
    match read_line(&mut input, &mut line) {
        Ok(Some(Line::Whole)) if line.starts_with(HEADER.as_bytes()) => {}
        Ok(_) => return Err("no async-lockdep store header"),
        Err(_) => return Err("cannot read it"),
    }
    let mut parsed = Parsed::default();
    while let Ok(Some(kind)) = read_line(&mut input, &mut line) {
        match kind {
            Line::Whole => {
                let text = std::str::from_utf8(&line).ok();
                if let Some(cycle) = text.and_then(cycle_of_line) {
                    parsed.cycles.push(cycle);
                    continue;
                }
                match text.and_then(|text| StoredDependency::from_line(text, pid)) {
                    Some(record) => parsed.records.push(record),
                    None => parsed.damaged += 1,
                }
            }
            Line::TooLong => parsed.damaged += 1,
            Line::Unfinished => break,
        }
    }
    Ok(parsed)
}
