use super::*;
use proptest::prelude::*;
use serde_json::Value;

fn pod() -> Fields {
    Fields::new(
        &[
            ("pod_name".into(), "web-7d9f".into()),
            ("namespace".into(), "shop".into()),
        ],
        Some("source"),
        Some("file"),
    )
}

fn spliced(fields: &Fields, line: &str) -> (String, Splice) {
    let mut out = Vec::new();
    let s = fields.splice(line.as_bytes(), "web", "/var/log/app.log", &mut out);
    (String::from_utf8(out).unwrap(), s)
}

const ALL: &str =
    r#""pod_name":"web-7d9f","namespace":"shop","source":"web","file":"/var/log/app.log""#;

#[test]
fn an_empty_object_gets_the_fields_without_a_leading_comma() {
    let (out, s) = spliced(&pod(), "{}\n");
    assert_eq!(out, format!("{{{ALL}}}\n"));
    assert_eq!(s, Splice::Spliced);
}

#[test]
fn an_empty_object_with_space_keeps_its_space() {
    let (out, s) = spliced(&pod(), "{ }\n");
    assert_eq!(out, format!("{{ {ALL}}}\n"));
    assert_eq!(s, Splice::Spliced);
}

#[test]
fn spaces_after_the_closing_brace_stay_after_it() {
    let (out, _) = spliced(&pod(), "{\"a\":1 }  \t\n");
    assert_eq!(out, format!("{{\"a\":1 ,{ALL}}}  \t\n"));
}

#[test]
fn a_crlf_line_keeps_its_cr() {
    let (out, s) = spliced(&pod(), "{\"a\":1}\r\n");
    assert_eq!(out, format!("{{\"a\":1,{ALL}}}\r\n"));
    assert_eq!(s, Splice::Spliced);
}

#[test]
fn a_line_without_its_newline_is_spliced_too() {
    let (out, _) = spliced(&pod(), "{\"a\":1}");
    assert_eq!(out, format!("{{\"a\":1,{ALL}}}"));
}

#[test]
fn braces_inside_strings_and_nested_objects_do_not_move_the_insertion() {
    let line = r#"{"msg":"a } b {","n":{"pod_name":"inner","x":[1,{"y":"}"}]}}"#;
    let (out, s) = spliced(&pod(), &format!("{line}\n"));
    let expected = format!("{},{ALL}}}\n", &line[..line.len() - 1]);
    assert_eq!(out, expected);
    assert_eq!(
        s,
        Splice::Spliced,
        "a nested pod_name is not the app's top-level key"
    );
}

#[test]
fn a_key_the_app_wrote_wins_even_when_escaped() {
    let line = "{\"pod\\u005fname\":\"mine\",\"a\":1}\n";
    let (out, s) = spliced(&pod(), line);
    assert_eq!(
        out,
        "{\"pod\\u005fname\":\"mine\",\"a\":1,\"namespace\":\"shop\",\"source\":\"web\",\
         \"file\":\"/var/log/app.log\"}\n"
    );
    assert_eq!(s, Splice::AppKept(1));
}

#[test]
fn when_the_app_wrote_every_key_nothing_is_added() {
    let line = r#"{"file":1,"source":2,"namespace":3,"pod_name":4,"file":5}"#;
    let (out, s) = spliced(&pod(), &format!("{line}\n"));
    assert_eq!(out, format!("{line}\n"));
    assert_eq!(s, Splice::AppKept(4), "a key written twice counts once");
}

#[test]
fn values_and_keys_are_json_escaped() {
    let f = Fields::new(&[("k".into(), "a\"b\\c\n\u{1}é".into())], None, Some("f"));
    let mut out = Vec::new();
    f.splice(b"{}\n", "s", "/p/\"q\"", &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"k\":\"a\\\"b\\\\c\\n\\u0001é\",\"f\":\"/p/\\\"q\\\"\"}\n"
    );
}

#[test]
fn lines_that_are_not_objects_pass_untouched() {
    let f = pod();
    for line in [
        "[1,2]\n",
        "\"{}\"\n",
        "42\n",
        "null\n",
        "{\"a\":\n",
        "{\"a\":1}}\n",
        "not json {}\n",
        "\n",
        "",
        "{\"a\":\"caf\u{e9}\"",
    ] {
        let (out, s) = spliced(&f, line);
        assert_eq!((out.as_str(), s), (line, Splice::NotObject), "{line:?}");
    }
    let mut out = Vec::new();
    let bad = b"{\"a\":\"caf\xe9\"}\n";
    assert_eq!(f.splice(bad, "s", "f", &mut out), Splice::NotObject);
    assert_eq!(out, bad, "invalid UTF-8 is not JSON");
}

#[test]
fn a_key_with_a_lone_surrogate_is_json_and_none_of_ours() {
    let line = "{\"\\ud800\":1,\"source\":\"app\"}\n";
    let (out, s) = spliced(&pod(), line);
    assert_eq!(s, Splice::AppKept(1));
    assert!(out.starts_with("{\"\\ud800\":1,\"source\":\"app\",\"pod_name\""));
}

#[test]
fn a_line_the_fields_would_make_too_large_is_shipped_as_written() {
    let f = pod();
    let suffix = f.suffix("web", "/var/log/app.log");
    let line = b"{\"a\":1}\n";
    let shape = f.probe(b"{\"a\":1}").unwrap();
    let full = line.len() + ALL.len() + 1;
    let mut out = Vec::new();
    assert_eq!(
        splice_into(line, &shape, &suffix, full, &mut out),
        Splice::Spliced
    );
    assert_eq!(out.len(), full, "exactly at the limit still fits");
    out.clear();
    assert_eq!(
        splice_into(line, &shape, &suffix, full - 1, &mut out),
        Splice::TooLarge
    );
    assert_eq!(out, line);
}

#[test]
fn no_fields_leave_every_line_as_it_is() {
    let f = Fields::new(&[], None, None);
    for line in ["{}\n", "{\"a\":1}\n", "[]\n"] {
        let mut out = Vec::new();
        f.splice(line.as_bytes(), "s", "f", &mut out);
        assert_eq!(out, line.as_bytes());
    }
}

// ---- Property tests -------------------------------------------------------------

/// A JSON value to render in many spellings.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(&'static str),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// Keys the fields may use: the app writes some of them, so collisions are common.
const KEYS: [&str; 6] = ["pod", "namespace", "node", "src", "file", "k.1-x"];

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KEYS.to_vec()).prop_map(String::from),
        "[a-z]{0,6}",
        any::<String>(),
        "[\"\\\\/{}\\[\\]:, \u{0}-\u{1f}é€😀]{0,8}",
    ]
}

/// `huge`: numbers out of f64's range too, which serde_json's `Value` refuses.
fn arb_json(huge: bool) -> impl Strategy<Value = J> {
    let big = if huge { "1e400" } else { "1e300" };
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        prop::sample::select(vec![
            "0",
            "-0",
            "12",
            "-3.5",
            big,
            "2.5E-3",
            "123456789012345678901234567890"
        ])
        .prop_map(J::Num),
        arb_text().prop_map(J::Str),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            prop::collection::vec((arb_text(), inner), 0..5).prop_map(J::Obj),
        ]
    })
}

/// The app's object: distinct keys (after unescaping).
fn arb_object(huge: bool) -> impl Strategy<Value = Vec<(String, J)>> {
    prop::collection::btree_map(arb_text(), arb_json(huge), 0..7)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

/// Renders `j` with whitespace and escapes drawn from `rng`, on one line.
fn render(j: &J, rng: &mut fastrand::Rng, out: &mut String) {
    let ws = |rng: &mut fastrand::Rng, out: &mut String| {
        out.push_str(["", "", " ", "\t", " \r ", "  "][rng.usize(..6)]);
    };
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(n),
        J::Str(s) => render_str(s, rng, out),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                ws(rng, out);
                if i > 0 {
                    out.push(',');
                    ws(rng, out);
                }
                render(item, rng, out);
            }
            ws(rng, out);
            out.push(']');
        }
        J::Obj(members) => render_obj(members, rng, out),
    }
}

fn render_obj(members: &[(String, J)], rng: &mut fastrand::Rng, out: &mut String) {
    let ws = |rng: &mut fastrand::Rng, out: &mut String| {
        out.push_str(["", "", " ", "\t", "  "][rng.usize(..5)]);
    };
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        ws(rng, out);
        if i > 0 {
            out.push(',');
            ws(rng, out);
        }
        render_str(k, rng, out);
        ws(rng, out);
        out.push(':');
        ws(rng, out);
        render(v, rng, out);
    }
    ws(rng, out);
    out.push('}');
}

/// A string, each character written plainly or escaped in one of JSON's ways.
fn render_str(s: &str, rng: &mut fastrand::Rng, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let must = c == '"' || c == '\\' || (c as u32) < 0x20;
        match (must, rng.u8(..4)) {
            (false, 0 | 1) => out.push(c),
            (_, 2) if "\"\\/\n\t\r\u{8}\u{c}".contains(c) => {
                let e = match c {
                    '\n' => 'n',
                    '\t' => 't',
                    '\r' => 'r',
                    '\u{8}' => 'b',
                    '\u{c}' => 'f',
                    other => other,
                };
                out.push('\\');
                out.push(e);
            }
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// The top-level members in order, refusing duplicate keys.
fn members(text: &str) -> Result<Vec<(String, Value)>, String> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, Value)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object without duplicate keys")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, Value)> = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                if out.iter().any(|(seen, _)| *seen == k) {
                    return Err(de::Error::custom(format!("duplicate key {k:?}")));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let m = de.deserialize_map(Members).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(m)
}

fn arb_fields() -> impl Strategy<Value = (Vec<(String, String)>, Option<String>, Option<String>)> {
    (
        prop::sample::subsequence(KEYS.to_vec(), 0..=KEYS.len()).prop_shuffle(),
        prop::collection::vec(any::<String>(), KEYS.len()),
        0u8..4,
    )
        .prop_map(|(keys, values, extra)| {
            let mut keys: Vec<String> = keys.into_iter().map(String::from).collect();
            let file = (extra & 1 == 1).then(|| keys.pop()).flatten();
            let source = (extra & 2 == 2).then(|| keys.pop()).flatten();
            let add = keys.into_iter().zip(values).collect();
            (add, source, file)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For any object in any spelling and any fields: the output is JSON without
    /// duplicate keys, equal to the app's members followed by the fields whose keys the
    /// app did not write; every byte outside the insertion is the input's.
    #[test]
    fn splicing_adds_exactly_the_missing_fields_and_keeps_the_app_bytes(
        object in arb_object(false),
        (add, source_field, file_field) in arb_fields(),
        source in any::<String>(),
        file in any::<String>(),
        seed in any::<u64>(),
        tail in prop::sample::select(vec!["\n", " \n", "\r\n", "\t \n", ""]),
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut line = String::new();
        render_obj(&object, &mut rng, &mut line);
        line.push_str(tail);
        let fields = Fields::new(&add, source_field.as_deref(), file_field.as_deref());
        let mut out = Vec::new();
        let s = fields.splice(line.as_bytes(), &source, &file, &mut out);
        let out = String::from_utf8(out).unwrap();

        let app = members(&line).unwrap();
        let got = members(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
        let ours = add.iter().cloned()
            .chain(source_field.iter().map(|k| (k.clone(), source.clone())))
            .chain(file_field.iter().map(|k| (k.clone(), file.clone())));
        let mut expected = app.clone();
        let mut kept = 0;
        for (k, v) in ours {
            if app.iter().any(|(a, _)| *a == k) {
                kept += 1;
            } else {
                expected.push((k, Value::String(v)));
            }
        }
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(s, if kept == 0 { Splice::Spliced } else { Splice::AppKept(kept) });

        let close = line.rfind('}').unwrap();
        let after = line.len() - close;
        prop_assert_eq!(&out[..close], &line[..close], "the app's bytes before the brace");
        prop_assert_eq!(&out[out.len() - after..], &line[close..], "the brace and after");
    }

    /// Arrays and scalars in any spelling pass untouched.
    #[test]
    fn values_that_are_not_objects_pass_untouched(j in arb_json(true), seed in any::<u64>()) {
        prop_assume!(!matches!(j, J::Obj(_)));
        let mut line = String::new();
        render(&j, &mut fastrand::Rng::with_seed(seed), &mut line);
        line.push('\n');
        let mut out = Vec::new();
        prop_assert_eq!(pod().splice(line.as_bytes(), "s", "f", &mut out), Splice::NotObject);
        prop_assert_eq!(out, line.as_bytes());
    }

    /// The probe's verdict on JSON is the batch stage's old one, for valid objects with
    /// a byte changed, inserted or removed, and for arbitrary bytes.
    #[test]
    fn the_probe_judges_json_as_serde_json_does(
        object in arb_object(true),
        seed in any::<u64>(),
        edit in 0u8..4,
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[]\",:\\ u0a\x01\xe9".to_vec()),
        noise in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut text = String::new();
        render_obj(&object, &mut rng, &mut text);
        let mut body = text.into_bytes();
        let i = at.index(body.len());
        match edit {
            0 => body[i] = byte,
            1 => body.insert(i, byte),
            2 => { body.remove(i); }
            _ => body = noise,
        }
        let old = std::str::from_utf8(&body)
            .is_ok_and(|s| serde_json::from_str::<IgnoredAny>(s).is_ok());
        prop_assert_eq!(pod().probe(&body).is_some(), old);
        let mut out = Vec::new();
        if !old {
            prop_assert_eq!(pod().splice(&body, "s", "f", &mut out), Splice::NotObject);
            prop_assert_eq!(out, body);
        }
    }
}
