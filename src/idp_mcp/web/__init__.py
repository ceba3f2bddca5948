"""Server-rendered pages: sign-in, first-administrator setup, consent, sign-out. They only render and call
the core and the authorization flow; the policy lives there."""
