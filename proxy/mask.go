package proxy

// TEMPORARY until proxy/mask lands.
func (p *Proxy) maskAnswer(c *call, body []byte) []byte { return body }
func (p *Proxy) maskText(b []byte) []byte               { return b }
