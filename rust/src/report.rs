//! The two sides of a divergence (`Error::NonDeterminism`): what the journal recorded and what
//! the code asks for, as data the Python layer words (`pynenc/report.py`).

use crate::entry::{CallSite, Op};

/// One side of a divergence: an operation as the journal recorded it or as the code asks for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `random`, `uuid`, `utc_now`, `side_effect`, `execute_task`, `get_data`, `set_data`, or
    /// `return` (the task returning: the end of the journal, or code that stops short of it).
    pub kind: &'static str,
    /// The short description used in messages (`side_effect("charge")`).
    pub description: String,
    /// The side effect's name, the task id or the data key.
    pub name: Option<String>,
    /// The value as text, when it is not held in codec bytes.
    pub value: Option<String>,
    /// The value's codec bytes (a side effect's value or error, a data read), decoded by the
    /// Python layer.
    pub data: Option<Vec<u8>>,
    /// Where the operation was made, when known.
    pub site: Option<CallSite>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)?;
        if let Some(site) = &self.site {
            write!(f, " at {}:{}", site.code.file, site.line)?;
        }
        Ok(())
    }
}

impl Op {
    /// The operation as one side of a divergence report (its call site is added by the
    /// caller). `with_value`: the recorded side, whose value is shown.
    pub fn report(&self, with_value: bool) -> Report {
        let mut r = Report {
            description: self.describe(),
            ..Report::default()
        };
        match self {
            Op::Random(v) => {
                r.kind = "random";
                r.value = Some(format!("{}", crate::stream::u64_to_unit_f64(*v)));
            }
            Op::Uuid(u) => {
                r.kind = "uuid";
                r.value = Some(crate::ids::format(u));
            }
            Op::Time(t) => {
                r.kind = "utc_now";
                let c = crate::clock::Civil::from_us(*t);
                r.value = Some(format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
                    c.year, c.month, c.day, c.hour, c.minute, c.second, c.microsecond
                ));
            }
            Op::SideEffect(e) => {
                r.kind = "side_effect";
                r.name = Some(e.name.to_string());
                r.data = Some(e.value.clone());
                if e.failed {
                    r.value = Some("raised".into());
                }
            }
            Op::Child(c) => {
                r.kind = "execute_task";
                r.name = Some(c.task_id.to_string());
                r.value = Some(format!("args digest {}", hex4(&c.args_digest[..4])));
            }
            Op::DataRead(d) => {
                r.kind = "get_data";
                r.name = Some(d.key.to_string());
                match &d.value {
                    Some(v) => r.data = Some(v.clone()),
                    None => r.value = Some("absent".into()),
                }
            }
            Op::Patch(id) => {
                r.kind = "patch";
                r.name = Some(id.to_string());
            }
            Op::DataWrite(w) => {
                r.kind = "set_data";
                r.name = Some(w.key.to_string());
                r.value = Some(format!("value digest {}", hex4(&w.value_digest[..4])));
            }
        }
        if !with_value && !matches!(self, Op::Child(_) | Op::DataWrite(_)) {
            r.value = None;
            r.data = None;
        }
        r
    }
}

fn hex4(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::entry::{CallSite, Code, Entry, Op};
    use crate::error::Error;
    use crate::recorder::Recorder;

    fn at(op: Op, line: u32) -> Entry {
        Entry {
            op,
            call_site: Some(Box::new(CallSite {
                code: Arc::new(Code {
                    file: "/app/flow.py".into(),
                    function: "main".into(),
                }),
                line,
            })),
        }
    }

    #[test]
    fn a_divergence_reports_the_recorded_entry_with_its_site_and_value() {
        let journal = vec![
            at(Op::Time(0), 3),
            at(Op::side_effect("fx", vec![0x61], false), 4),
        ];
        let mut replay = Recorder::new("wf".into(), [1; 16], 0, journal);
        replay.time().unwrap();
        let Err(Error::NonDeterminism {
            position,
            recorded,
            requested,
            ..
        }) = replay.side_effect("fy")
        else {
            panic!("expected a divergence");
        };
        assert_eq!(position, 1);
        assert_eq!(
            (recorded.kind, recorded.name.as_deref()),
            ("side_effect", Some("fx"))
        );
        assert_eq!(recorded.data.as_deref(), Some(&[0x61][..]));
        assert_eq!(recorded.site.as_ref().map(|s| s.line), Some(4));
        // The requested side has no value yet; its call site is the caller's to add.
        assert_eq!(requested.name.as_deref(), Some("fy"));
        assert!(requested.data.is_none() && requested.site.is_none());
    }

    #[test]
    fn past_the_end_the_recorded_side_is_located_at_the_last_entry() {
        let mut replay =
            Recorder::new("wf".into(), [1; 16], 0, vec![at(Op::Random(1), 7)]).strict();
        replay.random_u64().unwrap();
        let Err(Error::NonDeterminism { recorded, .. }) = replay.uuid() else {
            panic!("expected a divergence");
        };
        assert_eq!(recorded.kind, "return");
        assert_eq!(recorded.site.map(|s| s.line), Some(7));
    }
}
