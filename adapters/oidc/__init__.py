"""The gateway as an OpenID Connect relying party of the citizens' identity provider (Authlib, joserfc)."""
