"""HTTP plumbing: resolvers, routers, and the one place errors become OpenAI envelopes."""
