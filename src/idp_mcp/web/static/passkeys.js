// Passkeys on the hosted pages. A form with data-passkey="sign-in" or "register" asks the server for WebAuthn
// options (a CSRF-checked POST to data-passkey-options), lets the browser and the authenticator answer, puts the
// answer (JSON, binary fields as base64url) in the form's "credential" field and submits the form. A static file:
// the pages' Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function toBuffer(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBuffers(options) {
    options.challenge = toBuffer(options.challenge);
    if (options.user) options.user.id = toBuffer(options.user.id);
    (options.excludeCredentials || []).concat(options.allowCredentials || []).forEach(function (credential) {
      credential.id = toBuffer(credential.id);
    });
    return options;
  }

  function encode(credential) {
    var r = credential.response;
    var response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      if (r.userHandle) response.userHandle = toBase64url(r.userHandle);
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: response,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
    });
  }

  async function ceremony(form) {
    var body = new URLSearchParams();
    body.set("csrf_token", form.elements.csrf_token.value);
    body.set("interaction", form.elements.interaction.value);
    var reply = await fetch(form.dataset.passkeyOptions, {
      method: "POST", body: body, credentials: "same-origin", headers: { Accept: "application/json" },
    });
    var options = await reply.json().catch(function () { return {}; });
    if (!reply.ok || !options.challenge) {
      var refusal = new Error(options.message || "Passkeys are not available right now. Try again.");
      refusal.name = "ServerRefusal";  // the server's sentence is shown as it is
      throw refusal;
    }
    var publicKey = withBuffers(options);
    var credential = form.dataset.passkey === "register"
      ? await navigator.credentials.create({ publicKey: publicKey })
      : await navigator.credentials.get({ publicKey: publicKey });
    form.elements.credential.value = encode(credential);
    form.submit();
  }

  function explain(error) {
    if (error && error.name === "NotAllowedError") return "The passkey prompt was closed or timed out. Try again.";
    if (error && error.name === "InvalidStateError") return "This device already has a passkey for your account.";
    if (error && error.name === "ServerRefusal") return error.message;
    return "The passkey did not work. Try again, or use another way.";
  }

  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    var status = form.querySelector("[data-passkey-status]");
    var button = form.querySelector("button[type=submit]");
    if (!window.PublicKeyCredential || !navigator.credentials) {
      if (status) status.textContent = "This browser cannot use passkeys. Use another way.";
      if (button) button.disabled = true;
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button) button.disabled = true;
      if (status) status.textContent = "Follow your browser's prompt to use your passkey.";
      ceremony(form).catch(function (error) {
        if (status) status.textContent = explain(error);
        if (button) button.disabled = false;
      });
    });
  });
})();
