// node-oidc-provider 9.x as a real upstream OpenID provider for the connector tests (tests/e2e/test_connectors.py).
//
//   node server.mjs <config.json>     (listens on 127.0.0.1 only; prints "listening <port>" when ready)
//
// config.json: { "port": 0, "clients": [{ "client_id", "client_secret", "redirect_uris": [...] }],
//                "accounts": { "<login>": { "email", "email_verified", "name" } } }
//
// devInteractions gives a real login page (inputs `login`, `password`: any password) and a consent page; the account
// id is the login typed, and its claims come from "accounts". Storage is the provider's own in-memory adapter.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const server = createServer();
await new Promise((resolve) => server.listen(config.port || 0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'email', 'profile'],
  pkce: { required: () => true },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, ...(config.accounts[id] || {}) }),
  }),
  features: { devInteractions: { enabled: true } },
});
provider.proxy = false;
server.on('request', provider.callback());
console.log(`listening ${port}`);
