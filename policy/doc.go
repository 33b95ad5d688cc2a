// Package policy decides which HTTP requests are protected operations: the
// transfers, bill payments, bulk transfers, token changes and user changes
// that otpgate pauses until the customer enters a one-time code.
//
// # The threat
//
// otpgate sits in front of a legacy banking site that it cannot change. Such
// sites run on old Java servlet containers or IIS, and they are lenient: they
// decode percent-escapes (sometimes twice), strip ";jsessionid=" path
// parameters, resolve "." and "..", accept backslashes, ignore letter case and
// trailing dots or spaces, and honour method-override headers and "_method"
// fields. A gateway that compares the path as it arrives would see
// "/Transfer;x=1/execute" or "/menu/..;/transfer/execute" as harmless and
// forward it, and the bank would execute a transfer without a code. This
// mismatch between what a proxy checks and what the backend executes is a
// recurring class of bypasses:
//
//   - Envoy CVE-2019-9901: paths were matched before "." and ".." were
//     resolved, so "/x/../admin" passed rules written for "/admin"; and
//     CVE-2021-29492 did the same with "%2F" and "%5C".
//   - Traefik CVE-2025-32431: "/../" in a path escaped the middlewares of
//     path-based routers.
//   - Authelia CVE-2021-32637: a malformed request path that nginx forwarded
//     was approved instead of refused.
//   - F5 BIG-IP CVE-2020-5902: "/..;/" passed the proxy's check and Tomcat
//     resolved it as "/../".
//   - Apache Shiro CVE-2020-1957 and CVE-2020-13933: ";" and encoded ";"
//     made Shiro and Spring read different paths.
//
// So policy reads a request the way a lenient backend could read it, in
// several plausible ways at once (see [NormalisePath]), and treats the request
// as protected if any reading matches a rule. When it cannot read something —
// an unparsable body, an unknown charset, a field with conflicting values — it
// does not guess in the customer's favour: the request stays protected and
// the [Match]'s [Verdict] says whether to refuse it, hold it without showing
// its fields, or show them escaped (what you see is what you confirm; the
// rule is written out in wysiwyc.go).
//
// # Use
//
// [Compile] turns the operator's [Rule] list into a [Policy]. For each request
// the gateway first asks [Policy.Watches], which looks only at the path and
// method and costs nothing on ordinary traffic; only if it says yes is the
// body buffered and [Policy.Classify] called to get the operation kind and the
// fields to show on the confirm page.
//
// The package imports neither Caddy nor any storage: it is pure functions over
// a [Request] view, so it can be tested and fuzzed on its own.
package policy
