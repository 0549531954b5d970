// Security keys and passkeys: runs the WebAuthn ceremony of the widget on
// the page (`#webauthn`: register or assert; `#passkey`: the login page's
// passkey sign-in). Served as a file because the pages'
// Content-Security-Policy allows no inline script. The server keeps the
// ceremony's state; this only carries options and answers between it and
// `navigator.credentials`, which binds the answer to this origin.
(function () {
  "use strict";

  var CANCELLED = "The request was cancelled or timed out. Try again, or choose another method.";
  var UNSUPPORTED = "This browser cannot use security keys or passkeys. Choose another method.";

  function fromB64url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      var copy = Object.assign({}, c);
      copy.id = fromB64url(c.id);
      return copy;
    });
  }

  // The server's options (webauthn-rs JSON) as the browser API wants them.
  function creationOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.user = Object.assign({}, pk.user, {id: fromB64url(pk.user.id)});
    pk.excludeCredentials = withIds(pk.excludeCredentials);
    return {publicKey: pk};
  }

  function requestOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.allowCredentials = withIds(pk.allowCredentials);
    return {publicKey: pk};
  }

  function answerJson(cred) {
    var r = cred.response;
    var response = {clientDataJSON: toB64url(r.clientDataJSON)};
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) { response.transports = r.getTransports(); }
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
    }
    return JSON.stringify({
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: response,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {}
    });
  }

  function post(box, url, fields) {
    var body = Object.assign({csrf: box.dataset.csrf, rd: box.dataset.rd || ""}, fields);
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Accept": "application/json", "Content-Type": "application/json"},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (json) {
        if (!r.ok) { throw {server: json.message || json.error || "The request was refused."}; }
        return json;
      });
    });
  }

  function say(box, text) {
    var out = document.getElementById(box.id + "-message");
    if (out) { out.textContent = text; }
  }

  function failure(box, err) {
    if (err && err.server) { return say(box, err.server); }
    if (err && (err.name === "NotAllowedError" || err.name === "AbortError")) { return say(box, CANCELLED); }
    if (err && err.name === "InvalidStateError") { return say(box, "This key is registered already."); }
    say(box, "Something went wrong with the security key. " + CANCELLED);
  }

  // One ceremony: options from the server, the browser's answer back.
  function ceremony(box, extra) {
    var register = box.dataset.mode === "register";
    return post(box, box.dataset.optionsUrl, {}).then(function (options) {
      var request = register ? creationOptions(options) : requestOptions(options);
      if (extra) { Object.assign(request, extra); }
      return register ? navigator.credentials.create(request) : navigator.credentials.get(request);
    }).then(function (cred) {
      var name = document.getElementById("webauthn-name");
      return post(box, box.dataset.finishUrl, {credential: answerJson(cred), name: name ? name.value : ""});
    }).then(function (done) {
      window.location.assign(done.next);
    });
  }

  function setUp(box) {
    if (!box) { return; }
    var button = document.getElementById(box.id + "-start");
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say(box, UNSUPPORTED);
      if (button) { button.disabled = true; }
      return;
    }
    var autofill = null;
    if (box.dataset.mode === "passkey" && PublicKeyCredential.isConditionalMediationAvailable) {
      // Passkeys offered in the email field's autofill where supported; a
      // click on the button takes over from it.
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available) { return; }
        autofill = new AbortController();
        ceremony(box, {mediation: "conditional", signal: autofill.signal}).catch(function () {});
      });
    }
    button.addEventListener("click", function (event) {
      event.preventDefault();
      if (autofill) { autofill.abort(); autofill = null; }
      say(box, "");
      ceremony(box, null).catch(function (err) { failure(box, err); });
    });
  }

  setUp(document.getElementById("webauthn"));
  setUp(document.getElementById("passkey"));
})();
