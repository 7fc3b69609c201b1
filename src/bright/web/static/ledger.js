/* BRIGHT ledger: check a record's inclusion proof in the browser.
   Fetches the proof bundle of /api/ledger/records/{index}/proof, hashes the record's canonical JSON as
   an RFC 9162 leaf (SHA-256 of 0x00 || bytes), folds the audit path (0x01 || left || right) and
   compares the result with the signed tree head's root. SHA-256 is written out here (FIPS 180-4) so
   the check also runs on a node served over plain http, where crypto.subtle is not available.
   Sets document.body.dataset.verified to "ok" or "bad" when done (the browser tests wait on it). */
(function () {
  "use strict";
  var K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

  function sha256(bytes) {
    var n = bytes.length, bitLen = n * 8;
    var padded = new Uint8Array(((n + 9 + 63) >> 6) << 6);
    padded.set(bytes); padded[n] = 0x80;
    var view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
    view.setUint32(padded.length - 4, bitLen >>> 0);
    var h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    var w = new Uint32Array(64);
    function rotr(x, r) { return (x >>> r) | (x << (32 - r)); }
    for (var off = 0; off < padded.length; off += 64) {
      for (var i = 0; i < 16; i++) { w[i] = view.getUint32(off + 4 * i); }
      for (i = 16; i < 64; i++) {
        var s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        var s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
      for (i = 0; i < 64; i++) {
        var S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        var ch = (e & f) ^ (~e & g);
        var t1 = (hh + S1 + ch + K[i] + w[i]) >>> 0;
        var S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        var maj = (a & b) ^ (a & c) ^ (b & c);
        var t2 = (S0 + maj) >>> 0;
        hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] = (h[0] + a) >>> 0; h[1] = (h[1] + b) >>> 0; h[2] = (h[2] + c) >>> 0; h[3] = (h[3] + d) >>> 0;
      h[4] = (h[4] + e) >>> 0; h[5] = (h[5] + f) >>> 0; h[6] = (h[6] + g) >>> 0; h[7] = (h[7] + hh) >>> 0;
    }
    var out = new Uint8Array(32), ov = new DataView(out.buffer);
    for (i = 0; i < 8; i++) { ov.setUint32(4 * i, h[i]); }
    return out;
  }

  function concat(parts) {
    var len = parts.reduce(function (s, p) { return s + p.length; }, 0), out = new Uint8Array(len), o = 0;
    parts.forEach(function (p) { out.set(p, o); o += p.length; });
    return out;
  }
  function b64url(bytes) {
    var s = ""; bytes.forEach(function (b) { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64url(text) {
    var s = text.replace(/-/g, "+").replace(/_/g, "/"); while (s.length % 4) { s += "="; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  /* Canonical JSON of the ledger's values (objects, arrays, strings, integers, booleans, null):
     keys sorted, no whitespace -- RFC 8785 for these values, as bright.ledger.records.canonical_json. */
  function canonical(v) {
    if (v === null || typeof v !== "object") { return JSON.stringify(v); }
    if (Array.isArray(v)) { return "[" + v.map(canonical).join(",") + "]"; }
    return "{" + Object.keys(v).sort().map(function (k) { return JSON.stringify(k) + ":" + canonical(v[k]); }).join(",") + "}";
  }
  var ZERO = new Uint8Array([0]), ONE = new Uint8Array([1]);
  function rootFromProof(leaf, proof) {
    var fn = proof.index, sn = proof.size - 1, r = leaf;
    if (!(fn >= 0 && fn < proof.size)) { throw new Error("index " + fn + " is not below size " + proof.size); }
    proof.path.forEach(function (item) {
      var sib = unb64url(item);
      if (sn === 0) { throw new Error("proof longer than the tree is deep"); }
      if ((fn & 1) || fn === sn) {
        r = sha256(concat([ONE, sib, r]));
        if (!(fn & 1)) { while (!(fn & 1) && fn) { fn >>= 1; sn >>= 1; } }
      } else {
        r = sha256(concat([ONE, r, sib]));
      }
      fn >>= 1; sn >>= 1;
    });
    if (sn !== 0) { throw new Error("proof shorter than the tree is deep"); }
    return r;
  }
  window.brightLedger = { sha256: sha256, canonical: canonical, rootFromProof: rootFromProof, b64url: b64url };

  var form = document.querySelector("form[data-verify]");
  if (!form) { return; }
  var L = JSON.parse(document.getElementById("verify-labels").textContent);
  var input = form.querySelector("input[name=record]"), err = document.getElementById("record-error");
  var result = document.getElementById("verify-result");
  function line(label, value, cls) {
    var dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = label; dd.textContent = value; if (cls) { dd.className = cls; }
    return [dt, dd];
  }
  function show(items, ok) {
    result.textContent = "";
    var dl = document.createElement("dl"); dl.className = "facts";
    items.forEach(function (p) { dl.appendChild(p[0]); dl.appendChild(p[1]); });
    result.appendChild(dl);
    document.body.dataset.verified = ok ? "ok" : "bad";
  }
  function verify(index) {
    delete document.body.dataset.verified;
    if (!/^\d+$/.test(index)) {
      err.textContent = L.index; err.hidden = false; input.setAttribute("aria-invalid", "true");
      document.body.dataset.verified = "input"; return;
    }
    err.hidden = true; input.removeAttribute("aria-invalid");
    fetch("/api/ledger/records/" + index + "/proof", { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) { throw new Error(body.detail || body.title || r.status); } return body; });
    }).then(function (bundle) {
      var entry = bundle.entries[0], head = bundle.head;
      var leaf = sha256(concat([ZERO, new TextEncoder().encode(canonical(entry.record))]));
      var root = rootFromProof(leaf, entry.proof);
      var ok = b64url(root) === head.root && entry.proof.size === head.size && entry.proof.index === Number(index);
      var items = [line(L.leaf, b64url(leaf), "hash"), line(L.root, b64url(root), "hash"),
                   line(L.head, head.size + " · " + head.timestamp + " · " + head.root, "hash"),
                   line(ok ? L.ok : L.bad, ok ? "✓" : "✗", ok ? "good" : "error-msg")];
      return fetch("/api/ledger/heads/" + head.size).then(function (r) { return r.json(); }).then(function (h) {
        if (h.finality) { items.push(line(h.finality.final ? L.final : L.not_final, h.finality.signers.length + "/" + h.finality.required)); }
        var a = document.createElement("a"); a.href = "/api/ledger/records/" + index + "/proof"; a.textContent = L.bundle;
        items.push([document.createElement("dt"), (function () { var dd = document.createElement("dd"); dd.appendChild(a); return dd; })()]);
        show(items, ok);
      });
    }).catch(function (e) {
      err.textContent = String(e.message || e); err.hidden = false; input.setAttribute("aria-invalid", "true");
      result.textContent = ""; document.body.dataset.verified = "error";
    });
  }
  form.addEventListener("submit", function (ev) { ev.preventDefault(); verify(input.value.trim()); });
  document.querySelectorAll("[data-verify-index]").forEach(function (b) {
    b.addEventListener("click", function () { input.value = b.dataset.verifyIndex; verify(b.dataset.verifyIndex); });
  });
  if (input.value.trim() && !input.getAttribute("aria-invalid")) { verify(input.value.trim()); }
})();
