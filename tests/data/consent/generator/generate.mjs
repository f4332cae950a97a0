// Generates consent-string test vectors for fairgate with the IAB reference
// libraries (@iabtcf/core for TCF v2.2, @iabgpp/cmpapi for GPP).
//
//   cd tests/data/consent/generator && npm ci && node generate.mjs
//
// Writes ../tcf_cases.json and ../gpp_cases.json. Fully deterministic: fixed
// dates, no randomness, no wall clock in the output. Every value written to
// the JSON files is read back from the encoded string by the reference
// library's own decoder (never copied from the encoding inputs); the
// generator additionally checks the decoded values against the intended ones
// and fails loudly if the library silently dropped something.

import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import assert from "node:assert/strict";

import { GVL, TCModel, TCString, PurposeRestriction, RestrictionType, Segment } from "@iabtcf/core";

// @iabgpp/cmpapi's CmpApi is written for browsers: its constructor reads and
// replaces `window.__gpp` (the page-level GPP stub). Under Node there is no
// `window`, so provide a minimal stub whose `__gpp()` returns an empty queue.
globalThis.window = { __gpp: () => [] };
const { CmpApi, HeaderV1 } = await import("@iabgpp/cmpapi");

const OUT_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");

const CMP_ID = 10;
const CMP_VERSION = 1;
const VENDOR_LIST_VERSION = 300;
const TCF_POLICY_VERSION = 4; // TCF v2.2

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const without = (arr, ...ids) => arr.filter((x) => !ids.includes(x));
const sortNum = (arr) => [...arr].sort((a, b) => a - b);

// JSON pretty-printer: objects one key per line, arrays of scalars on one line
// (vendor lists are up to 1000 long), arrays of objects one element per line.
function fmt(value, indent = "") {
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    if (value.every((v) => v === null || typeof v !== "object")) {
      return "[" + value.map((v) => JSON.stringify(v)).join(", ") + "]";
    }
    return "[\n" + value.map((v) => inner + fmt(v, inner)).join(",\n") + "\n" + indent + "]";
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 0) return "{}";
    return (
      "{\n" +
      keys.map((k) => inner + JSON.stringify(k) + ": " + fmt(value[k], inner)).join(",\n") +
      "\n" +
      indent +
      "}"
    );
  }
  return JSON.stringify(value);
}

function writeJson(name, data) {
  writeFileSync(join(OUT_DIR, name), fmt(data) + "\n");
}

// base64url (no padding) -> bit string, as used by TCF segments.
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
function toBits(segment) {
  let bits = "";
  for (const ch of segment) {
    const v = B64.indexOf(ch);
    if (v < 0) throw new Error(`bad base64url char ${ch}`);
    bits += v.toString(2).padStart(6, "0");
  }
  return bits;
}
const readInt = (bits, off, len) => parseInt(bits.substr(off, len), 2);

// TCF v2 core segment: offset of MaxVendorId of the vendor-consent section.
// Version 6, Created 36, LastUpdated 36, CmpId 12, CmpVersion 12,
// ConsentScreen 6, ConsentLanguage 12, VendorListVersion 12,
// TcfPolicyVersion 6, IsServiceSpecific 1, UseNonStandardTexts 1,
// SpecialFeatureOptIns 12, PurposesConsent 24, PurposesLITransparency 24,
// PurposeOneTreatment 1, PublisherCC 12  => 213 bits.
const TCF_VENDOR_SECTION_OFFSET = 213;

// Independent, minimal read of the vendor-consent section straight from the
// bits (used to classify the encoding and to cross-check @iabtcf/core).
function rawVendorConsents(tcString) {
  return rawVendorSection(toBits(tcString.split(".")[0]), TCF_VENDOR_SECTION_OFFSET);
}

// The vendor legitimate-interest section: it follows the consent section.
function rawVendorLegitimateInterests(tcString) {
  const bits = toBits(tcString.split(".")[0]);
  return rawVendorSection(bits, rawVendorSection(bits, TCF_VENDOR_SECTION_OFFSET).end);
}

// One vendor section (MaxVendorId, IsRangeEncoding, then a bitfield or ranges) at `off`.
function rawVendorSection(bits, off) {
  const maxVendorId = readInt(bits, off, 16);
  off += 16;
  const isRange = bits[off] === "1";
  off += 1;
  const ids = [];
  let numEntries = 0;
  if (isRange) {
    numEntries = readInt(bits, off, 12);
    off += 12;
    for (let i = 0; i < numEntries; i++) {
      const isGroup = bits[off] === "1";
      off += 1;
      const start = readInt(bits, off, 16);
      off += 16;
      let end = start;
      if (isGroup) {
        end = readInt(bits, off, 16);
        off += 16;
      }
      for (let v = start; v <= end; v++) ids.push(v);
    }
  } else {
    for (let v = 1; v <= maxVendorId; v++) if (bits[off + v - 1] === "1") ids.push(v);
    off += maxVendorId;
  }
  return { maxVendorId, encoding: isRange ? "range" : "bitfield", numEntries, ids, end: off };
}

// ---------------------------------------------------------------------------
// TCF v2.2
// ---------------------------------------------------------------------------

// A synthetic Global Vendor List (the real one cannot be fetched here, and a
// fixed one keeps the output reproducible). Every vendor 1..1000 declares
// consent purposes 1,3,4,5,6, legitimate-interest purposes 2,7,8,9,10,11,
// flexible purposes 2,3,4,5,7,9,10, special features 1,2 — so no consent or
// LI bit is dropped by @iabtcf/core's SemanticPreEncoder, and publisher
// restrictions of all three types are accepted (type 0 on purpose 3; type 1
// on LI+flexible purposes such as 2; type 2 on consent+flexible purposes 3,
// 4 and 5).
function buildGvlJson() {
  const named = (ids, what) =>
    Object.fromEntries(ids.map((id) => [String(id), { id, name: `${what} ${id}`, description: `${what} ${id}`, illustrations: [] }]));
  const vendors = {};
  for (const id of range(1, 1000)) {
    vendors[String(id)] = {
      id,
      name: `Test Vendor ${id}`,
      purposes: [1, 3, 4, 5, 6],
      legIntPurposes: [2, 7, 8, 9, 10, 11],
      flexiblePurposes: [2, 3, 4, 5, 7, 9, 10],
      specialPurposes: [1, 2],
      features: [1, 2, 3],
      specialFeatures: [1, 2],
      cookieMaxAgeSeconds: 31536000,
      usesCookies: true,
      cookieRefresh: false,
      usesNonCookieAccess: false,
      dataRetention: { stdRetention: 365, purposes: {}, specialPurposes: {} },
      dataDeclaration: [1, 2, 3],
      urls: [{ langId: "en", privacy: `https://vendor${id}.example/privacy`, legIntClaim: `https://vendor${id}.example/li` }],
    };
  }
  return {
    gvlSpecificationVersion: 3,
    vendorListVersion: VENDOR_LIST_VERSION,
    tcfPolicyVersion: TCF_POLICY_VERSION,
    lastUpdated: "2024-06-13T16:00:00Z",
    purposes: named(range(1, 11), "Purpose"),
    specialPurposes: named([1, 2, 3], "Special Purpose"),
    features: named([1, 2, 3], "Feature"),
    specialFeatures: named([1, 2], "Special Feature"),
    stacks: {},
    dataCategories: named(range(1, 11), "Data category"),
    vendors,
  };
}

const gvl = new GVL(buildGvlJson());

const D = (y, mo, d, h = 0, mi = 0, s = 0, ms = 0) => new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
// sub-decisecond milliseconds on purpose: TCF stores deciseconds and
// @iabtcf/core rounds (Math.round(ms / 100)), so 56.789 s is stored as 56.8 s.
const DEFAULT_CREATED = D(2024, 3, 1, 12, 34, 56, 789);
const DEFAULT_UPDATED = D(2024, 6, 15, 8, 30, 0, 42);

// The verdict each string should get from fairgate, written by hand from
// the rules (README "Consent"), not computed: the Rust tests check fairgate
// against them. TCF strings are judged with GDPR applying, at
// 2024-06-16T08:30:00Z, for vendor 755 and the shipped policy's purposes
// 1, 3, 4 unless the case names others (`required_purposes`); GPP strings
// with `regs.gdpr` absent and `gpp_sid` = the header's ids unless the case
// names others (`gpp_sid`). A reason given by a GPP section carries its id
// (`gpp_notice:7`).
const P = (geo = true) => ({ outcome: "personalised", reason: "consented", precise_geo: geo });
const C = (reason) => ({ outcome: "contextual", reason, precise_geo: false });
// Purposes that may rest on legitimate interest (2, 7) beside 1, 3, 4.
const WITH_LI_PURPOSES = [1, 2, 3, 4, 7];

const ALL_PURPOSES = range(1, 11);
const LI_PURPOSES = [2, 7, 9, 10];
const ODD_1_999 = range(1, 999).filter((v) => v % 2 === 1); // includes 755
const RANGE_SET = [...range(1, 600), ...range(700, 900)]; // includes 755

const tcfSpecs = [
  {
    name: "all_purposes_v755_sf1_bitfield",
    verdict: P(),
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: ODD_1_999, expect: "bitfield",
  },
  {
    name: "all_purposes_v755_sf1_range",
    verdict: P(),
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
  },
  {
    name: "purposes_1_3_4_only_v755_sf1_bitfield",
    verdict: P(),
    purposes: [1, 3, 4], li: [], sf: [1],
    vendors: ODD_1_999, expect: "bitfield",
  },
  {
    name: "core_segment_only_all_purposes_v755_sf1",
    verdict: P(),
    description: "same consents as all_purposes_v755_sf1_range but encoded with only the core segment (no publisher TC segment)",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range", coreOnly: true,
  },
  {
    name: "missing_purpose_3_bitfield",
    verdict: C("tcf_purpose"),
    purposes: without(ALL_PURPOSES, 3), li: LI_PURPOSES, sf: [1],
    vendors: ODD_1_999, expect: "bitfield",
  },
  {
    name: "missing_purpose_3_range",
    verdict: C("tcf_purpose"),
    purposes: without(ALL_PURPOSES, 3), li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
  },
  {
    name: "missing_purpose_4_range",
    verdict: C("tcf_purpose"),
    purposes: without(ALL_PURPOSES, 4), li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
  },
  {
    name: "missing_vendor_755_bitfield",
    verdict: C("tcf_vendor"),
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: without(ODD_1_999, 755), expect: "bitfield",
  },
  {
    name: "missing_vendor_755_range",
    verdict: C("tcf_vendor"),
    description: "ranges 1..754 and 756..1000",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: without(range(1, 1000), 755), expect: "range",
  },
  {
    name: "vendor_755_neighbours_only_range",
    verdict: C("tcf_vendor"),
    description: "ranges 700..754 and 756..800: 754 and 756 consented, 755 not (off-by-one check)",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: [...range(700, 754), ...range(756, 800)], expect: "range",
  },
  {
    name: "sf1_not_opted_in",
    verdict: P(false),
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [2],
    vendors: RANGE_SET, expect: "range",
  },
  {
    name: "no_consents",
    verdict: C("tcf_purpose"),
    purposes: [], li: [], sf: [],
    vendors: [], expect: "bitfield",
  },
  {
    name: "purpose_1_only",
    verdict: C("tcf_purpose"),
    purposes: [1], li: [], sf: [],
    vendors: range(1, 1000), expect: "range",
  },
  {
    name: "pub_restriction_not_allowed_p3_v755",
    verdict: C("tcf_restricted"),
    description: "full consent, but publisher restriction type 0 (not allowed) on purpose 3 for vendors 755..760",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
    restrictions: [{ purpose: 3, type: RestrictionType.NOT_ALLOWED, vendors: range(755, 760) }],
  },
  {
    name: "pub_restriction_not_allowed_p3_other_vendor",
    verdict: P(),
    description: "restriction type 0 on purpose 3 applies only to vendor 10, not 755",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
    restrictions: [{ purpose: 3, type: RestrictionType.NOT_ALLOWED, vendors: [10] }],
  },
  {
    name: "pub_restrictions_types_1_and_2_v755",
    verdict: P(),
    description: "type 1 (require consent) on purpose 2 and type 2 (require LI) on purpose 5 for vendor 755; neither is a 'not allowed'",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
    restrictions: [
      { purpose: 2, type: RestrictionType.REQUIRE_CONSENT, vendors: [755] },
      { purpose: 5, type: RestrictionType.REQUIRE_LI, vendors: [755] },
    ],
  },
  {
    name: "old_string_2020_01_15",
    verdict: C("tcf_expired"),
    description: "otherwise fully consented, created and last updated 2020-01-15 (expiry tests); policy version and vendor list version are the same as the other cases",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
    created: D(2020, 1, 15, 9, 0, 0, 0), updated: D(2020, 1, 15, 9, 0, 0, 0),
  },
  {
    name: "vendor_755_single_range_entry",
    verdict: P(),
    description: "only vendor 755 consented: range encoding with one single-id entry 755",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: [755], expect: "range",
  },
  {
    name: "vendor_range_ending_at_755",
    verdict: P(),
    description: "one range 1..755 (MaxVendorId = 755)",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: range(1, 755), expect: "range",
  },
  {
    name: "vendor_range_starting_at_755",
    verdict: P(),
    description: "one range 755..1000",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: range(755, 1000), expect: "range",
  },
  {
    name: "vendor_range_ending_at_754",
    verdict: C("tcf_vendor"),
    description: "one range 1..754: MaxVendorId 754, vendor 755 just past the end",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: range(1, 754), expect: "range",
  },
  {
    name: "large_vendor_set_bitfield_max_1000",
    verdict: P(),
    description: "all ids 1..1000 not divisible by 3 (MaxVendorId 1000), bitfield",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1, 2],
    vendors: range(1, 1000).filter((v) => v % 3 !== 0), expect: "bitfield",
  },
  {
    name: "large_vendor_set_range_all_1000",
    verdict: P(),
    description: "all vendors 1..1000: one range entry",
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1, 2],
    vendors: range(1, 1000), expect: "range",
  },
  // ---- issue 13: legitimate interest and publisher restriction types 1 and 2 ----
  {
    name: "restriction_require_li_p3_v755",
    description: "full consent, but restriction type 2 (require legitimate interest) on purpose 3 for vendor 755: purpose 3 needs consent, so it is unavailable",
    verdict: C("tcf_restricted"),
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
    restrictions: [{ purpose: 3, type: RestrictionType.REQUIRE_LI, vendors: [755] }],
  },
  {
    name: "restriction_require_li_p4_other_vendor",
    description: "restriction type 2 on purpose 4 for vendor 10 only: vendor 755 is not restricted",
    verdict: P(),
    purposes: ALL_PURPOSES, li: LI_PURPOSES, sf: [1],
    vendors: RANGE_SET, expect: "range",
    restrictions: [{ purpose: 4, type: RestrictionType.REQUIRE_LI, vendors: [10] }],
  },
  {
    name: "li_purposes_2_7_v755_li_bitfield",
    description: "purposes 2 and 7 by legitimate interest only (purpose LI + vendor 755 LI), 1, 3, 4 by consent; required 1, 2, 3, 4, 7",
    required_purposes: WITH_LI_PURPOSES,
    verdict: P(),
    purposes: [1, 3, 4], li: [2, 7], sf: [1],
    vendors: RANGE_SET, vendorLi: ODD_1_999, expect: "range", expectLi: "bitfield",
  },
  {
    name: "li_purposes_2_7_v755_li_range",
    description: "as li_purposes_2_7_v755_li_bitfield, the vendor LI section range-encoded (700..800)",
    required_purposes: WITH_LI_PURPOSES,
    verdict: P(),
    purposes: [1, 3, 4], li: [2, 7], sf: [1],
    vendors: RANGE_SET, vendorLi: range(700, 800), expect: "range", expectLi: "range",
  },
  {
    name: "li_purposes_2_7_without_vendor_li",
    description: "purposes 2 and 7 by legitimate interest, but vendor 755 has no LI (754 and 756 do)",
    required_purposes: WITH_LI_PURPOSES,
    verdict: C("tcf_vendor"),
    purposes: [1, 3, 4], li: [2, 7], sf: [1],
    vendors: RANGE_SET, vendorLi: [754, 756], expect: "range", expectLi: "range",
  },
  {
    name: "li_for_consent_purpose_3_does_not_count",
    description: "purpose 3 has LI transparency but no consent: purposes 1 and 3-6 need consent",
    verdict: C("tcf_purpose"),
    purposes: [1, 4], li: [2, 3, 7], sf: [1],
    vendors: RANGE_SET, vendorLi: range(700, 800), expect: "range", expectLi: "range",
  },
  {
    name: "restriction_require_consent_p2_li_only",
    description: "purpose 2 by legitimate interest only, restriction type 1 (require consent) on purpose 2 for vendor 755: the LI basis is removed",
    required_purposes: WITH_LI_PURPOSES,
    verdict: C("tcf_restricted"),
    purposes: [1, 3, 4, 7], li: [2, 7], sf: [1],
    vendors: RANGE_SET, vendorLi: range(700, 800), expect: "range", expectLi: "range",
    restrictions: [{ purpose: 2, type: RestrictionType.REQUIRE_CONSENT, vendors: [755] }],
  },
];

function vectorIds(vector) {
  return sortNum([...vector.values()]);
}

function decodedRestrictions(prv) {
  const out = [];
  for (const [hash, bst] of prv.map) {
    const pr = PurposeRestriction.unHash(hash);
    out.push({ purpose: pr.purposeId, restriction_type: pr.restrictionType, vendors: sortNum(bst.get()) });
  }
  out.sort((a, b) => a.purpose - b.purpose || a.restriction_type - b.restriction_type);
  return out;
}

function buildTcfCase(spec) {
  const model = new TCModel(gvl);
  model.cmpId = CMP_ID;
  model.cmpVersion = CMP_VERSION;
  model.consentScreen = 1;
  model.publisherCountryCode = "DE";
  model.isServiceSpecific = true; // TCF v2.2: global scope is gone
  model.purposeConsents.set(spec.purposes);
  model.purposeLegitimateInterests.set(spec.li);
  model.specialFeatureOptins.set(spec.sf);
  model.vendorConsents.set(spec.vendors);
  model.vendorLegitimateInterests.set(spec.vendorLi ?? spec.vendors.filter((v) => v <= 10));
  for (const r of spec.restrictions ?? []) {
    for (const v of r.vendors) model.publisherRestrictions.add(v, new PurposeRestriction(r.purpose, r.type));
  }
  // TCModel's constructor stamps created/lastUpdated with today's date;
  // overwrite with fixed values for reproducibility.
  model.created = spec.created ?? DEFAULT_CREATED;
  model.lastUpdated = spec.updated ?? DEFAULT_UPDATED;

  const options = spec.coreOnly ? { segments: [Segment.CORE] } : undefined;
  const tcString = TCString.encode(model, options);

  // ---- everything below is read back from the string ----
  const dec = TCString.decode(tcString);
  const raw = rawVendorConsents(tcString);
  const rawLi = rawVendorLegitimateInterests(tcString);
  const vendorConsents = vectorIds(dec.vendorConsents);

  // sanity checks: the library kept what we asked for, and our independent
  // bit reader agrees with @iabtcf/core.
  assert.deepEqual(vendorConsents, sortNum(spec.vendors), `${spec.name}: vendor consents changed by encoder`);
  assert.deepEqual(raw.ids, vendorConsents, `${spec.name}: raw bit read disagrees with @iabtcf/core`);
  assert.equal(raw.encoding, spec.expect, `${spec.name}: expected ${spec.expect} encoding, got ${raw.encoding}`);
  assert.deepEqual(rawLi.ids, vectorIds(dec.vendorLegitimateInterests), `${spec.name}: raw LI bit read disagrees with @iabtcf/core`);
  if (spec.vendorLi) {
    assert.deepEqual(rawLi.ids, sortNum(spec.vendorLi), `${spec.name}: vendor LI changed by encoder`);
    assert.deepEqual(vectorIds(dec.purposeLegitimateInterests), sortNum(spec.li), `${spec.name}: purpose LI changed by encoder`);
  }
  if (spec.expectLi) assert.equal(rawLi.encoding, spec.expectLi, `${spec.name}: vendor LI encoding`);
  assert.deepEqual(vectorIds(dec.purposeConsents), sortNum(spec.purposes), `${spec.name}: purposes`);
  assert.deepEqual(vectorIds(dec.specialFeatureOptins), sortNum(spec.sf), `${spec.name}: special features`);
  assert.equal(dec.version, 2);
  assert.equal(dec.policyVersion, TCF_POLICY_VERSION);
  const wantRestr = (spec.restrictions ?? []).map((r) => ({ purpose: r.purpose, restriction_type: r.type, vendors: sortNum(r.vendors) }));
  assert.deepEqual(decodedRestrictions(dec.publisherRestrictions), wantRestr, `${spec.name}: publisher restrictions`);

  const out = {
    name: spec.name,
  };
  if (spec.description) out.description = spec.description;
  if (spec.required_purposes) out.required_purposes = spec.required_purposes;
  out.expect = spec.verdict;
  Object.assign(out, {
    tc_string: tcString,
    created_ms: dec.created.getTime(),
    last_updated_ms: dec.lastUpdated.getTime(),
    purpose_consents: vectorIds(dec.purposeConsents),
    purpose_legitimate_interests: vectorIds(dec.purposeLegitimateInterests),
    special_feature_optins: vectorIds(dec.specialFeatureOptins),
    vendor_consents: vendorConsents,
    vendor_consent_encoding: raw.encoding,
    max_vendor_id: raw.maxVendorId,
    vendor_legitimate_interests: vectorIds(dec.vendorLegitimateInterests),
    vendor_li_encoding: rawLi.encoding,
    publisher_restrictions: decodedRestrictions(dec.publisherRestrictions),
    vendor_755_consent: dec.vendorConsents.has(755),
    version: dec.version,
    policy_version: dec.policyVersion,
    vendor_list_version: dec.vendorListVersion,
    cmp_id: dec.cmpId,
    cmp_version: dec.cmpVersion,
    consent_language: dec.consentLanguage,
    publisher_country_code: dec.publisherCountryCode,
    is_service_specific: dec.isServiceSpecific,
    segment_count: tcString.split(".").length,
  });
  return out;
}

const tcfCases = tcfSpecs.map(buildTcfCase);
const names = new Set(tcfCases.map((c) => c.name));
assert.equal(names.size, tcfCases.length, "duplicate TCF case names");

// ---------------------------------------------------------------------------
// GPP
// ---------------------------------------------------------------------------

// Fields recorded per section (only those the section actually has are kept).
const US_FIELDS = [
  "Version",
  "SharingNotice",
  "SaleOptOutNotice",
  "SharingOptOutNotice",
  "TargetedAdvertisingOptOutNotice",
  "SensitiveDataProcessingOptOutNotice",
  "SensitiveDataLimitUseNotice",
  "SaleOptOut",
  "SharingOptOut",
  "TargetedAdvertisingOptOut",
  "SensitiveDataProcessing",
  "KnownChildSensitiveDataConsents",
  "PersonalDataConsents",
  "MspaCoveredTransaction",
  "MspaOptOutOptionMode",
  "MspaServiceProviderMode",
  // sections 24-27 (usmd, usin, usky, usri)
  "MspaVersion",
  "MspaMode",
  "ProcessingNotice",
  "AdditionalDataProcessingConsent",
  "SensitiveDataConsentSegmentIncluded",
  "GpcSegmentIncluded",
  "Gpc",
];
const USP_FIELDS = ["Version", "Notice", "OptOutSale", "LspaCovered"];
const TCF_SCALAR_FIELDS = [
  "Version",
  "CmpId",
  "CmpVersion",
  "ConsentScreen",
  "ConsentLanguage",
  "VendorListVersion",
  "PolicyVersion",
  "IsServiceSpecific",
  "UseNonStandardStacks",
  "PurposeOneTreatment",
  "PublisherCountryCode",
];

const boolsToIds = (bools) => bools.flatMap((b, i) => (b ? [i + 1] : []));
const idsToBools = (ids, len) => Array.from({ length: len }, (_, i) => ids.includes(i + 1));

function decodeSection(api, sid) {
  const obj = api.getSectionById(sid); // section.toObj(): field values as decoded
  assert.ok(obj, `section ${sid} missing after decode`);
  const out = {};
  if (sid === 6) {
    for (const f of USP_FIELDS) out[f] = obj[f];
  } else if (sid === 2) {
    for (const f of TCF_SCALAR_FIELDS) out[f] = obj[f];
    out.Created = obj.Created.getTime();
    out.LastUpdated = obj.LastUpdated.getTime();
    out.PurposeConsents = boolsToIds(obj.PurposeConsents);
    out.PurposeLegitimateInterests = boolsToIds(obj.PurposeLegitimateInterests);
    out.SpecialFeatureOptins = boolsToIds(obj.SpecialFeatureOptins);
    out.VendorConsents = sortNum(obj.VendorConsents);
    out.VendorLegitimateInterests = sortNum(obj.VendorLegitimateInterests);
    out.PublisherRestrictions = obj.PublisherRestrictions.map((r) => ({ purpose: r.key, restriction_type: r.type, vendors: sortNum(r.ids) }));
  } else {
    for (const f of US_FIELDS) {
      // GpcSegmentIncluded is not part of toObj(); ask the field directly
      // nor is SensitiveDataConsentSegmentIncluded (usin, usky, usri)
      const v = f in obj
        ? obj[f]
        : (f === "GpcSegmentIncluded" && "Gpc" in obj) || (f === "SensitiveDataConsentSegmentIncluded" && sid >= 25)
          ? api.getFieldValueBySectionId(sid, f)
          : undefined;
      if (v !== undefined && v !== null) out[f] = v;
    }
  }
  return out;
}

// usnat/usca/... presets
const NOTICES_GIVEN = {
  SharingNotice: 1,
  SaleOptOutNotice: 1,
  SharingOptOutNotice: 1,
  TargetedAdvertisingOptOutNotice: 1,
  SensitiveDataProcessingOptOutNotice: 1,
  SensitiveDataLimitUseNotice: 1,
};
const NO_OPT_OUT = { SaleOptOut: 2, SharingOptOut: 2, TargetedAdvertisingOptOut: 2 };

const TCF_GPP_DATE = D(2024, 6, 15, 8, 30, 0, 0);

const gppSpecs = [
  {
    name: "usnat_sale_opt_out",
    verdict: C("gpp_opt_out:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, SaleOptOut: 1, SharingOptOut: 2, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_no_opt_out",
    verdict: P(),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_no_opt_out_library_default_gpc_segment",
    verdict: P(),
    description: "as usnat_no_opt_out but GpcSegmentIncluded left at the library default (true): the string carries a GPC segment with Gpc=false",
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, MspaCoveredTransaction: 2 }]],
  },
  {
    name: "usnat_targeted_ads_opt_out",
    verdict: C("gpp_opt_out:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, SaleOptOut: 2, SharingOptOut: 2, TargetedAdvertisingOptOut: 1, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_sharing_opt_out",
    verdict: C("gpp_opt_out:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, SaleOptOut: 2, SharingOptOut: 1, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_known_child_consents_v2",
    verdict: C("known_child:7"),
    description: "usnat version 2: KnownChildSensitiveDataConsents has 3 entries",
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, KnownChildSensitiveDataConsents: [1, 1, 1], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_known_child_consents_v2_consented",
    verdict: C("known_child:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, KnownChildSensitiveDataConsents: [2, 2, 2], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_v1_known_child_consents",
    verdict: C("known_child:7"),
    description: "legacy usnat version 1 layout: 12 SensitiveDataProcessing entries, 2 KnownChildSensitiveDataConsents entries",
    sections: [["usnat", { Version: 1, ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0], KnownChildSensitiveDataConsents: [2, 2, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_sensitive_data_processing",
    verdict: C("gpp_sensitive:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_precise_geolocation_opt_out",
    verdict: C("gpp_sensitive:7"),
    description: "opted out of sensitive data processing 8 (precise geolocation) only",
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [2, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_gpc_true",
    verdict: C("gpc:7"),
    description: "no opt-outs in the core segment but the GPC segment says Gpc=true",
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: true, Gpc: true }]],
  },
  {
    name: "usnat_mspa_not_covered_all_zero",
    verdict: P(),
    description: "all notices / opt-outs 0 (not applicable), MspaCoveredTransaction=2 (no)",
    sections: [["usnat", { MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  { name: "uspv1_1YYN", verdict: C("gpp_opt_out:6"), sections: [["uspv1", { Notice: "Y", OptOutSale: "Y", LspaCovered: "N" }]] },
  { name: "uspv1_1YNN", verdict: P(), sections: [["uspv1", { Notice: "Y", OptOutSale: "N", LspaCovered: "N" }]] },
  { name: "uspv1_1---", verdict: P(), sections: [["uspv1", { Notice: "-", OptOutSale: "-", LspaCovered: "-" }]] },
  {
    name: "tcfeuv2_purposes_1_3_4_v755",
    verdict: P(),
    sections: [["tcfeuv2", {
      CmpId: CMP_ID, CmpVersion: CMP_VERSION, ConsentScreen: 1, VendorListVersion: VENDOR_LIST_VERSION,
      PolicyVersion: TCF_POLICY_VERSION, PublisherCountryCode: "DE",
      PurposeConsents: idsToBools([1, 3, 4], 24),
      SpecialFeatureOptins: idsToBools([1], 12),
      VendorConsents: [2, 10, 52, 755],
      Created: TCF_GPP_DATE,
    }]],
  },
  {
    name: "tcfeuv2_v755_missing",
    verdict: C("tcf_vendor:2"),
    sections: [["tcfeuv2", {
      CmpId: CMP_ID, CmpVersion: CMP_VERSION, ConsentScreen: 1, VendorListVersion: VENDOR_LIST_VERSION,
      PolicyVersion: TCF_POLICY_VERSION, PublisherCountryCode: "DE",
      PurposeConsents: idsToBools([1, 3, 4], 24),
      SpecialFeatureOptins: idsToBools([1], 12),
      VendorConsents: [2, 10, 52, 754, 756],
      Created: TCF_GPP_DATE,
    }]],
  },
  {
    name: "tcfeuv2_from_iabtcf_core_string",
    verdict: C("tcf_restricted:2"),
    description: "tcfeuv2 section set with CmpApi.setSectionString() from the @iabtcf/core string of TCF case pub_restriction_not_allowed_p3_v755; the core segment is carried over byte for byte, CmpApi re-encodes and appends its own (empty) vendors-disclosed and publisher-purposes segments",
    sectionStrings: [["tcfeuv2", tcfCases.find((c) => c.name === "pub_restriction_not_allowed_p3_v755").tc_string]],
  },
  {
    name: "usca_sale_opt_out",
    verdict: C("gpp_opt_out:8"),
    sections: [["usca", { SaleOptOutNotice: 1, SharingOptOutNotice: 1, SensitiveDataLimitUseNotice: 1, SaleOptOut: 1, SharingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usca_no_opt_out",
    verdict: C("known_child:8"),
    sections: [["usca", { SaleOptOutNotice: 1, SharingOptOutNotice: 1, SensitiveDataLimitUseNotice: 1, SaleOptOut: 2, SharingOptOut: 2, SensitiveDataProcessing: [2, 2, 2, 2, 2, 2, 2, 2, 2], KnownChildSensitiveDataConsents: [2, 2], PersonalDataConsents: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usva_targeted_ads_opt_out",
    verdict: C("gpp_opt_out:9"),
    sections: [["usva", { SharingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 1, MspaCoveredTransaction: 2 }]],
  },
  {
    name: "usco_no_opt_out",
    verdict: P(),
    sections: [["usco", { SharingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usco_targeted_ads_opt_out_gpc",
    verdict: C("gpp_opt_out:10"),
    sections: [["usco", { SharingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 1, MspaCoveredTransaction: 2, GpcSegmentIncluded: true, Gpc: true }]],
  },
  {
    name: "multi_tcfeuv2_uspv1_usnat",
    verdict: P(),
    description: "sections 2, 6 and 7 together: TCF purposes 1,3,4 + vendor 755, uspv1 1YNN, usnat no opt-out",
    sections: [
      ["tcfeuv2", {
        CmpId: CMP_ID, CmpVersion: CMP_VERSION, ConsentScreen: 1, VendorListVersion: VENDOR_LIST_VERSION,
        PolicyVersion: TCF_POLICY_VERSION, PublisherCountryCode: "DE",
        PurposeConsents: idsToBools([1, 3, 4], 24),
        SpecialFeatureOptins: idsToBools([1], 12),
        VendorConsents: [755],
        Created: TCF_GPP_DATE,
      }],
      ["uspv1", { Notice: "Y", OptOutSale: "N", LspaCovered: "N" }],
      ["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }],
    ],
  },
  {
    name: "multi_uspv1_opt_out_usnat_sale_opt_out",
    verdict: C("gpp_opt_out:6"),
    sections: [
      ["uspv1", { Notice: "Y", OptOutSale: "Y", LspaCovered: "N" }],
      ["usnat", { ...NOTICES_GIVEN, SaleOptOut: 1, SharingOptOut: 1, TargetedAdvertisingOptOut: 1, MspaCoveredTransaction: 2, GpcSegmentIncluded: true, Gpc: true }],
    ],
  },
  // ---- issue 13: US National rules as Prebid Server enforces them ----
  {
    name: "usnat_sale_notice_not_given",
    description: "SaleOptOutNotice 2 (notice not given), no opt-out",
    verdict: C("gpp_notice:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, SaleOptOutNotice: 2, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_did_not_opt_out_without_notice",
    description: "SaleOptOut 2 (did not opt out) with SaleOptOutNotice 0 (not applicable): an invalid combination",
    verdict: C("gpp_notice:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, SaleOptOutNotice: 0, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_sharing_notice_not_applicable",
    description: "SharingOptOut 2 with SharingNotice 0",
    verdict: C("gpp_notice:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, SharingNotice: 0, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_service_provider_mode",
    description: "MspaServiceProviderMode 1, otherwise clean",
    verdict: C("gpp_service_provider:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, MspaCoveredTransaction: 1, MspaServiceProviderMode: 1, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_personal_data_consents_2",
    description: "PersonalDataConsents 2, otherwise clean (Prebid denies on 2)",
    verdict: C("gpp_personal_data:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, PersonalDataConsents: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_sensitive_health_refused",
    description: "SensitiveDataProcessing[2] (health) 1: a refusal of a category in Prebid's second set",
    verdict: C("gpp_sensitive:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_sensitive_health_consented",
    description: "SensitiveDataProcessing[2] (health) 2 with the sensitive-data notices given: allowed",
    verdict: P(),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_sensitive_health_consented_without_notices",
    description: "SensitiveDataProcessing[2] 2 with SensitiveDataProcessingOptOutNotice and SensitiveDataLimitUseNotice 0",
    verdict: C("gpp_sensitive:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, SensitiveDataProcessingOptOutNotice: 0, SensitiveDataLimitUseNotice: 0, ...NO_OPT_OUT, SensitiveDataProcessing: [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_sensitive_biometric_consented",
    description: "SensitiveDataProcessing[6] (biometric) 2: any value of a category in Prebid's third set denies",
    verdict: C("gpp_sensitive:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_precise_geo_refused_only",
    description: "SensitiveDataProcessing[7] (precise geolocation) 1, nothing else: personalised without precise geo",
    verdict: P(false),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_precise_geo_consented",
    description: "SensitiveDataProcessing[7] 2 with the notices given",
    verdict: P(),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, SensitiveDataProcessing: [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_precise_geo_consented_without_notices",
    description: "SensitiveDataProcessing[7] 2 with both sensitive-data notices 0: no precise geo (Prebid's USNatTransmitGeo)",
    verdict: P(false),
    sections: [["usnat", { ...NOTICES_GIVEN, SensitiveDataProcessingOptOutNotice: 0, SensitiveDataLimitUseNotice: 0, ...NO_OPT_OUT, SensitiveDataProcessing: [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_known_child_13_16_consented",
    description: "KnownChildSensitiveDataConsents [2, 0, 0]: consent for 13-16, allowed by Prebid's rule",
    verdict: P(),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, KnownChildSensitiveDataConsents: [2, 0, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usnat_known_child_under_13_consented",
    description: "KnownChildSensitiveDataConsents [0, 2, 0]: any value for under 13 is a known child",
    verdict: C("known_child:7"),
    sections: [["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, KnownChildSensitiveDataConsents: [0, 2, 0], MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "multi_usnat_clean_usca_sale_opt_out",
    description: "a clean usnat section and a usca section that opts out of sale: the strictest wins",
    verdict: C("gpp_opt_out:8"),
    sections: [
      ["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }],
      ["usca", { SaleOptOutNotice: 1, SharingOptOutNotice: 1, SensitiveDataLimitUseNotice: 1, SaleOptOut: 1, SharingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }],
    ],
  },
  {
    name: "tcfeuv2_purposes_1_3_4_v755_no_sf1",
    description: "as tcfeuv2_purposes_1_3_4_v755 without Special Feature 1: beside a bare TC string that has it, precise geo is refused",
    verdict: P(false),
    sections: [["tcfeuv2", {
      CmpId: CMP_ID, CmpVersion: CMP_VERSION, ConsentScreen: 1, VendorListVersion: VENDOR_LIST_VERSION,
      PolicyVersion: TCF_POLICY_VERSION, PublisherCountryCode: "DE",
      PurposeConsents: idsToBools([1, 3, 4], 24),
      VendorConsents: [2, 10, 52, 755],
      Created: TCF_GPP_DATE,
    }]],
  },
  // ---- sections 24-27, which the iab_gpp crate does not decode ----
  {
    name: "usmd_no_opt_out",
    verdict: P(),
    sections: [["usmd", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usmd_sale_opt_out",
    verdict: C("gpp_opt_out:24"),
    sections: [["usmd", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 1, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }]],
  },
  {
    name: "usmd_gpc",
    description: "usmd with its GPC segment, Gpc true",
    verdict: C("gpc:24"),
    sections: [["usmd", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: true, Gpc: true }]],
  },
  {
    name: "usin_known_child",
    verdict: C("known_child:25"),
    sections: [["usin", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, KnownChildSensitiveDataConsents: 1, MspaCoveredTransaction: 2, SensitiveDataConsentSegmentIncluded: false }]],
  },
  {
    name: "usin_no_opt_out_sensitive_segment",
    description: "usin with its sensitive-data segment, every entry 0; MspaMode 2 (Service Provider Mode)",
    verdict: C("gpp_service_provider:25"),
    sections: [["usin", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 1, MspaMode: 2, SensitiveDataProcessing: [0, 0, 0, 0, 0, 0, 0, 0] }]],
  },
  {
    name: "usky_sensitive_consent",
    description: "usky sensitive-data entry 3 is 2: the entries are unnamed, so any value but 0 denies",
    verdict: C("gpp_sensitive:26"),
    sections: [["usky", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, SensitiveDataProcessing: [0, 0, 2, 0, 0, 0, 0, 0] }]],
  },
  {
    name: "usri_no_opt_out",
    description: "AdditionalDataProcessingConsent 2: judged as US National's PersonalDataConsents (rule 13)",
    verdict: C("gpp_personal_data:27"),
    sections: [["usri", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, AdditionalDataProcessingConsent: 2, MspaCoveredTransaction: 2, SensitiveDataConsentSegmentIncluded: false }]],
  },
  {
    name: "usri_targeted_ads_notice_not_given",
    verdict: C("gpp_notice:27"),
    sections: [["usri", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 2, SaleOptOut: 2, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, SensitiveDataConsentSegmentIncluded: false }]],
  },
  {
    name: "usnat_clean_beside_usmd_sale_opt_out",
    description: "a clean usnat section beside a usmd section that opts out; gpp_sid lists 7 only, so section 24 does not apply",
    gpp_sid: [7],
    verdict: P(),
    sections: [
      ["usnat", { ...NOTICES_GIVEN, ...NO_OPT_OUT, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }],
      ["usmd", { ProcessingNotice: 1, SaleOptOutNotice: 1, TargetedAdvertisingOptOutNotice: 1, SaleOptOut: 1, TargetedAdvertisingOptOut: 2, MspaCoveredTransaction: 2, GpcSegmentIncluded: false }],
    ],
  },
];

function buildGppCase(spec) {
  const api = new CmpApi(CMP_ID, CMP_VERSION);
  for (const [section, str] of spec.sectionStrings ?? []) api.setSectionString(section, str);
  for (const [section, fields] of spec.sections ?? []) {
    // tcfeuv2: any setFieldValue other than Created/LastUpdated re-stamps both
    // dates with today's date, so the date is set last (keys are ordered so).
    for (const [field, value] of Object.entries(fields)) api.setFieldValue(section, field, value);
  }
  const gppString = api.getGppString();

  // ---- read back with a fresh CmpApi ----
  const dec = new CmpApi(CMP_ID, CMP_VERSION);
  dec.setGppString(gppString);
  const header = new HeaderV1(gppString.split("~")[0]);
  const sectionIds = header.getFieldValue("SectionIds");
  const sections = {};
  for (const sid of sectionIds) sections[String(sid)] = decodeSection(dec, sid);

  // sanity: intended values survived
  for (const [section, str] of spec.sectionStrings ?? []) {
    assert.equal(dec.getSectionString(section).split(".")[0], str.split(".")[0], `${spec.name}: ${section} core segment changed`);
  }
  for (const [section, fields] of spec.sections ?? []) {
    for (const [field, value] of Object.entries(fields)) {
      if (field === "Created") {
        assert.equal(dec.getFieldValue(section, field).getTime(), value.getTime(), `${spec.name}: ${section}.${field}`);
        continue;
      }
      let got = dec.getFieldValue(section, field);
      let want = value;
      if (section === "usnat" && fields.Version === 1 && Array.isArray(want)) {
        want = want.slice(0, field === "SensitiveDataProcessing" ? 12 : 2);
      }
      if (field === "Gpc" && fields.GpcSegmentIncluded === false) continue;
      assert.deepEqual(got, want, `${spec.name}: ${section}.${field}`);
    }
  }

  const out = { name: spec.name };
  if (spec.description) out.description = spec.description;
  if (spec.gpp_sid) out.gpp_sid = spec.gpp_sid;
  out.expect = spec.verdict;
  Object.assign(out, { gpp_string: gppString, section_ids: sectionIds, sections });
  return out;
}

const gppCases = gppSpecs.map(buildGppCase);
assert.equal(new Set(gppCases.map((c) => c.name)).size, gppCases.length, "duplicate GPP case names");

writeJson("tcf_cases.json", tcfCases);
writeJson("gpp_cases.json", gppCases);
console.log(`wrote ${tcfCases.length} TCF cases and ${gppCases.length} GPP cases to ${OUT_DIR}`);
