// node-oidc-provider 9.x configured like an idp-mcp tenant issuer, for bench/run only.
//
//   node server.mjs <port> <secret>     (listens on 127.0.0.1 only)
//
// Equivalent configuration: ES256 keys only; access tokens are RFC 9068 JWTs (resource indicators with
// accessTokenFormat 'jwt', ES256) for one resource; the same lifetimes as idp-mcp's defaults; client credentials
// enabled; refresh tokens rotate on every use; PKCE S256 (required for the public client). Storage is the
// provider's own in-memory adapter (nothing is written to disk, whereas idp-mcp writes every code and refresh
// token to SQLite: this favours node).
//
// A bench-only route, POST /bench/mint?kind=code|refresh&n=N, mints N authorization codes (each with a grant of
// its own and a PKCE S256 challenge) or N refresh tokens through the provider's own models and answers with
// "value verifier" lines. It exists only in this file.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const port = Number(process.argv[2] || 0);
const secret = process.argv[3] || 'bench-m2m-secret';
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'urn:idp-mcp-bench:api';
const REDIRECT_URI = 'http://127.0.0.1:9999/callback';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

// The provider's own in-memory adapter, with room for every minted code, refresh token and grant (its default
// store keeps only the 1,000 most recent entries, which would evict pre-minted codes before they are used).
const store = new LRU({ maxSize: 1_000_000 });

const provider = new Provider(issuer, {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [
    {
      client_id: 'bench-m2m',
      client_secret: secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'bench-spa',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  jwks: { keys: [jwk] },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  scopes: ['openid', 'offline_access'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) throw new Error('unknown resource');
        return {
          scope: 'api:read',
          audience: RESOURCE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  pkce: { required: () => true },
  rotateRefreshToken: () => true,
  // idp-mcp's defaults: access 3600 s, refresh 30 days, code 300 s, ID token 3600 s.
  ttl: {
    AccessToken: 3600,
    ClientCredentials: 3600,
    AuthorizationCode: 300,
    IdToken: 3600,
    RefreshToken: 30 * 86400,
    Grant: 30 * 86400,
    Session: 14 * 86400,
    Interaction: 900,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

function s256(verifier) {
  return createHash('sha256').update(verifier).digest('base64url');
}

async function mint(kind, n) {
  const client = await provider.Client.find('bench-spa');
  const lines = [];
  const authTime = Math.floor(Date.now() / 1000);
  for (let i = 0; i < n; i += 1) {
    const accountId = 'bench-user';
    // Refresh tokens carry no 'openid': node would issue a new ID token on every refresh, idp-mcp does not (its
    // refresh answer is an access token and the rotated refresh token), so both do the same work.
    const oidcScope = kind === 'code' ? 'openid offline_access' : 'offline_access';
    const grant = new provider.Grant({ accountId, clientId: client.clientId });
    grant.addOIDCScope(oidcScope);
    grant.addResourceScope(RESOURCE, 'api:read');
    const grantId = await grant.save();
    if (kind === 'code') {
      const verifier = randomBytes(32).toString('base64url');
      const code = new provider.AuthorizationCode({
        accountId,
        client,
        grantId,
        authTime,
        scope: `${oidcScope} api:read`,
        resource: RESOURCE,
        redirectUri: REDIRECT_URI,
        codeChallenge: s256(verifier),
        codeChallengeMethod: 'S256',
      });
      lines.push(`${await code.save()} ${verifier}`);
    } else {
      const token = new provider.RefreshToken({
        accountId,
        client,
        grantId,
        authTime,
        gty: 'authorization_code',
        scope: `${oidcScope} api:read`,
        resource: RESOURCE,
        rotations: 0,
      });
      lines.push(await token.save());
    }
  }
  return `${lines.join('\n')}\n`;
}

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith('/bench/mint')) {
    const url = new URL(req.url, 'http://127.0.0.1');
    const kind = url.searchParams.get('kind');
    const n = Math.min(Number(url.searchParams.get('n') || 0), 100000);
    if (req.method !== 'POST' || !['code', 'refresh'].includes(kind)) {
      res.writeHead(400).end();
      return;
    }
    mint(kind, n).then(
      (body) => res.writeHead(200, { 'content-type': 'text/plain' }).end(body),
      (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err?.stack || err)),
    );
    return;
  }
  callback(req, res);
});
server.keepAliveTimeout = 65000;
server.listen(port, '127.0.0.1', () => {
  console.log(`node-oidc-provider ${issuer} ready`);
});
