#!/usr/bin/env python3
"""Writes corpus.json: the bad-input corpus, one hostile record per kind.

    python3 tests/data/bad-input/generate.py

Every value fairgate must strip carries the marker SECRET; no other place
does. Tests (tests/hostile.rs, tests/kafka.rs) send each record through
`fairgate check` and through the pipeline on a broker, and assert that each
lands in exactly one topic, that nothing panics or stalls, and that SECRET
appears in no output or blocked record, no header, no log line and no metric
(a dead letter's payload is the original record, by contract).

An entry: kind, why, expect (output | blocked | dead_letter | any), key
(a string, null, or {"b64": ...}), payload_b64, and optionally expand:
{"marker": "@@X@@", "char": "x", "times": N, "then": optional}, the marker
replaced at load time by `char` N times (then `then` N times), so that large
records are not stored.
"""

import base64
import copy
import json
import os

TS = 1795000000000
SEGMENTS = [{"id": "dmp-1", "segment": [{"id": "health-SECRET-diabetes"}, {"id": "sports-football"}]}]


def base(n):
    return {
        "id": f"bad-{n:03d}",
        "ts": TS + n,
        "campaign": {"id": f"cmp-bad-{n % 7}"},
        "selected": n % 2 == 0,
        "user": {
            "id": "SECRET-uid",
            "buyeruid": "SECRET-buyeruid",
            "yob": 1990,
            "gender": "SECRET-gender",
            "eids": [{"source": "id5-sync.com", "uids": [{"id": "SECRET-eid"}]}],
            "data": copy.deepcopy(SEGMENTS),
            "geo": {"lat": 52.123456, "lon": 4.654321, "zip": "8427AB"},
        },
        "device": {"ip": "198.51.100.77", "ifa": "SECRET-ifa", "ua": "Mozilla/5.0", "geo": {"lat": 52.1, "lon": 4.9}},
        "regs": {"gdpr": 1, "coppa": 0, "gpc": 0},
        "audience": {"sex": "female", "note": "SECRET-audience"},
        "ad": {"creative_id": "cr-1"},
    }


def js(v):
    return json.dumps(v, separators=(",", ":")).encode()


entries = []


def add(kind, why, payload, expect="any", key="k-bad", expand=None):
    n = len(entries)
    e = {"kind": kind, "why": why, "expect": expect, "key": key,
         "payload_b64": base64.b64encode(payload).decode()}
    if expand:
        e["expand"] = expand
    entries.append(e)


def doc(edit, n=None):
    d = base(len(entries) if n is None else n)
    edit(d)
    return d


def set_(path, value):
    def f(d):
        o = d
        for p in path[:-1]:
            o = o[p]
        o[path[-1]] = value
    return f


def delete(path):
    def f(d):
        o = d
        for p in path[:-1]:
            o = o[p]
        del o[path[-1]]
    return f


# --- not a decision at all
add("not_json", "plain text", b"hello, fairgate", "dead_letter")
add("empty", "an empty record", b"", "dead_letter")
add("whitespace", "only whitespace", b"   \t ", "dead_letter")
add("binary", "bytes that are not UTF-8", bytes([0xff, 0xfe, 0x00, 0x01, 0x80]) + b"SECRET-in-binary", "dead_letter")
add("bad_utf8_in_string", "invalid UTF-8 inside a JSON string",
    js(base(4)).replace(b"SECRET-uid", b"SECRET-\xff\xfe-uid"), "dead_letter")
add("truncated", "the first half of a decision", js(base(5))[: len(js(base(5))) // 2], "dead_letter")
add("array", "a JSON array holding a decision", b"[" + js(base(6)) + b"]", "dead_letter")
add("number", "a JSON number", b"42", "dead_letter")
add("null", "JSON null", b"null", "dead_letter")
add("string", "a JSON string", b'"SECRET-as-a-string"', "dead_letter")
add("bom", "a UTF-8 byte-order mark before the decision", b"\xef\xbb\xbf" + js(base(10)), "any")
add("trailing_garbage", "a decision followed by text", js(base(11)) + b" trailing", "dead_letter")
add("two_documents", "two decisions in one record", js(base(12)) + js(base(12)), "dead_letter")
add("deep_nesting", "100,000 nested arrays in ext",
    js(doc(set_(["ext"], "@@X@@"))).replace(b'"@@X@@"', b"@@X@@"), "any",
    expand={"marker": "@@X@@", "char": "[", "times": 100_000, "then": "]"})
# --- required fields wrong
add("no_id", "id missing", js(doc(delete(["id"]))), "dead_letter")
add("id_number", "id is a number", js(doc(set_(["id"], 17))), "dead_letter")
add("no_ts", "ts missing", js(doc(delete(["ts"]))), "dead_letter")
add("ts_string", "ts is a string", js(doc(set_(["ts"], "2026-11-24T00:00:00Z"))), "dead_letter")
add("ts_float", "ts is a fraction", js(doc(set_(["ts"], 1.5e12))), "any")
add("ts_negative", "ts before 1970", js(doc(set_(["ts"], -1))), "any")
add("ts_max", "ts = i64::MAX", js(doc(set_(["ts"], 9223372036854775807))), "any")
add("ts_min", "ts = i64::MIN", js(doc(set_(["ts"], -9223372036854775808))), "any")
add("ts_beyond_i64", "ts larger than any integer type", js(doc(set_(["ts"], 99999999999999999999999))), "any")
add("no_campaign", "campaign missing", js(doc(delete(["campaign"]))), "dead_letter")
add("campaign_empty", "campaign id empty", js(doc(set_(["campaign", "id"], ""))), "any")
add("campaign_long", "campaign id of 300 characters", js(doc(set_(["campaign", "id"], "c" * 300))), "any")
add("campaign_control", "campaign id with terminal escapes",
    js(doc(set_(["campaign", "id"], "\u001b[31mRED\u0007\r\ncmp"))), "any")
add("campaign_string", "campaign is a string, not an object", js(doc(set_(["campaign"], "cmp-1"))), "any")
add("selected_string", "selected is a string", js(doc(set_(["selected"], "yes"))), "any")
# --- stripping by spelling
add("duplicate_user_id", "user.id twice in one object",
    js(base(len(entries))).replace(b'"id":"SECRET-uid"', b'"id":"SECRET-uid","id":"SECRET-uid-again"'), "any")
add("user_Id", "user.Id in another case", js(doc(lambda d: d["user"].update({"Id": d["user"].pop("id")}))), "any")
add("device_IFA", "device.IFA in capitals", js(doc(lambda d: d["device"].update({"IFA": d["device"].pop("ifa")}))), "any")
add("User_object", "the user object spelt User", js(doc(lambda d: d.update({"User": d.pop("user")}))), "any")
add("escaped_key", "the key user written with a JSON escape",
    js(base(len(entries))).replace(b'"user":', b'"us\\u0065r":'), "any")
add("audience_caps", "AUDIENCE in capitals", js(doc(lambda d: d.update({"AUDIENCE": d.pop("audience")}))), "any")
add("data_object", "user.data is an object, not an array",
    js(doc(set_(["user", "data"], {"id": "dmp-1", "segment": [{"id": "health-SECRET"}]}))), "any")
add("segment_object", "segment is an object, not an array",
    js(doc(set_(["user", "data"], [{"id": "dmp-1", "segment": {"id": "health-SECRET"}}]))), "any")
add("segment_case", "a sensitive segment id in another case",
    js(doc(set_(["user", "data"], [{"segment": [{"id": "Health-SECRET-diabetes"}, {"id": "HEALTH-SECRET-x"}]}]))), "any")
add("segment_space", "a sensitive segment id with spaces around it",
    js(doc(set_(["user", "data"], [{"segment": [{"id": " health-SECRET-x"}, {"id": "religion-SECRET \t"}]}]))), "any")
add("segment_id_number", "a segment id that is a number",
    js(doc(set_(["user", "data"], [{"segment": [{"id": 12}, {"id": "health-SECRET"}]}]))), "any")
add("segment_strings", "segments as bare strings",
    js(doc(set_(["user", "data"], [{"segment": ["health-SECRET", "sports"]}]))), "any")
add("segment_name_only", "a segment with a name and no id",
    js(doc(set_(["user", "data"], [{"segment": [{"name": "health-SECRET"}]}]))), "any")
# --- consent
add("tcf_garbage", "a TCF string that is not base64", js(doc(set_(["user", "consent"], "!!!!not-base64?"))), "any")
add("tcf_huge", "a 200 KB TCF string", js(doc(set_(["user", "consent"], "@@X@@"))), "any",
    expand={"marker": "@@X@@", "char": "C", "times": 200_000})
add("gpp_huge", "a 22 KB GPP string whose sections gpp_sid does not list",
    js(doc(lambda d: d["regs"].update({"gpp": "DBABMA~" + "C" * 22_000 + "~1YNN", "gpp_sid": [6]}))), "any")
add("gpp_garbage", "a GPP string that is not GPP", js(doc(lambda d: d["regs"].update({"gpp": "~~~", "gpp_sid": [2]}))), "any")
add("gpp_sid_string", "gpp_sid is a string", js(doc(lambda d: d["regs"].update({"gpp": "DBABMA~1YNN", "gpp_sid": "6"}))), "any")
add("gpp_sid_huge", "gpp_sid holds numbers beyond any integer",
    js(doc(lambda d: d["regs"].update({"gpp": "DBABMA~1YNN", "gpp_sid": [1e30, -5, 99999999999]}))), "any")
add("usp_trailing", "US Privacy with a trailing character", js(doc(lambda d: d["regs"].update({"gdpr": 0, "us_privacy": "1YNNX"}))), "any")
add("usp_tilde", "US Privacy with a trailing tilde", js(doc(lambda d: d["regs"].update({"gdpr": 0, "us_privacy": "1YNN~"}))), "any")
add("usp_long", "US Privacy of 1,000 characters", js(doc(lambda d: d["regs"].update({"gdpr": 0, "us_privacy": "1" + "N" * 999}))), "any")
add("gdpr_string", "regs.gdpr is a string", js(doc(lambda d: d["regs"].update({"gdpr": "1"}))), "any")
add("regs_array", "regs is an array", js(doc(set_(["regs"], [1, 0]))), "any")
add("coppa_child", "a known child", js(doc(lambda d: d["regs"].update({"coppa": 1}))), "any")
add("gpc", "Global Privacy Control on", js(doc(lambda d: d["regs"].update({"gdpr": 0, "gpc": 1}))), "any")
# --- values
add("nul_in_strings", "NUL characters in strings", js(doc(set_(["ad", "creative_id"], "cr\u0000-1"))), "any")
add("number_overflow", "a number beyond f64 in ext", js(base(len(entries))).replace(b'"ad":{', b'"ext":{"n":1e400},"ad":{'), "any")
add("ip_invalid", "device.ip that is no address", js(doc(set_(["device", "ip"], "999.1.1.SECRET"))), "any")
add("ip_number", "device.ip as a number", js(doc(set_(["device", "ip"], 3325256815))), "any")
add("geo_string", "coordinates as strings", js(doc(set_(["device", "geo"], {"lat": "52.123456", "lon": "x"}))), "any")
add("user_null", "user is null", js(doc(set_(["user"], None))), "any")
add("user_array", "user is an array holding the secrets",
    js(doc(set_(["user"], [{"id": "SECRET-uid"}]))), "any")
# --- sizes and keys
add("id_600k", "a 600 KB decision id (copied into a header)", js(doc(set_(["id"], "bad-long-@@X@@"))), "any",
    expand={"marker": "@@X@@", "char": "x", "times": 600_000})
add("big_900k", "a 900 KB decision", js(doc(set_(["ext"], {"note": "@@X@@"}))), "any",
    expand={"marker": "@@X@@", "char": "y", "times": 900_000})
add("not_json_900k", "900 KB that is not JSON", b"\xff@@X@@", "dead_letter",
    expand={"marker": "@@X@@", "char": "A", "times": 900_000})
add("key_none", "no key", js(base(len(entries))), "any", key=None)
add("key_binary", "a key that is not UTF-8", js(base(len(entries))), "any",
    key={"b64": base64.b64encode(bytes([0xff, 0x00, 0xfe])).decode()})
add("key_long", "a 10 KB key", js(base(len(entries))), "any", key="k" * 10_000)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.json")
with open(out, "w") as f:
    json.dump(entries, f, indent=1)
    f.write("\n")
print(f"{len(entries)} kinds -> {out}")
