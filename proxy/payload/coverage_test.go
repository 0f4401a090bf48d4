package payload

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// pii is what each model-written field of the corpus below carries; none
// of it may come out of MaskResponse or CopyStream with masking on.
const pii = "ops@example.com"

// answerFields are non-streamed answers with PII in every model-written
// position the API has (and some an upstream adds).
var answerFields = map[string]struct{ endpoint, body string }{
	"chat content parts":    {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"text","text":"mail ops@example.com"}]}}]}`},
	"chat refusal":          {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"not ops@example.com"}}]}`},
	"chat tool arguments":   {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{\"to\":\"ops@example.com\"}"}}]}}]}`},
	"chat url citation":     {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":"see","annotations":[{"type":"url_citation","url_citation":{"url":"https://x.example/?u=ops@example.com","title":"ops@example.com"}}]}}]}`},
	"chat second choice":    {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}},{"index":1,"message":{"role":"assistant","content":"ops@example.com"}}]}`},
	"chat logprobs":         {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"logprobs":{"content":[{"token":"ops@example.com","logprob":-1}]}}]}`},
	"chat reasoning":        {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":"x","reasoning_content":"ops@example.com","reasoning":"ops@example.com"}}]}`},
	"chat duplicate key":    {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":"ops@example.com","content":"clean"}}]}`},
	"chat case variant":     {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","Content":"ops@example.com","content":"clean"}}]}`},
	"chat invalid utf-8":    {EndpointChat, "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"ops\xff@example.com ops@example.com\"}}]}"},
	"resp code":             {EndpointResponses, `{"output":[{"type":"code_interpreter_call","id":"ci","code":"send('ops@example.com')","outputs":[{"type":"logs","logs":"ops@example.com"}]}]}`},
	"resp shell":            {EndpointResponses, `{"output":[{"type":"local_shell_call","id":"ls","call_id":"c","action":{"type":"exec","command":["mail","ops@example.com"]}}]}`},
	"resp web search":       {EndpointResponses, `{"output":[{"type":"web_search_call","id":"ws","action":{"type":"search","query":"ops@example.com"}}]}`},
	"resp mcp list":         {EndpointResponses, `{"output":[{"type":"mcp_list_tools","id":"ml","server_label":"s","tools":[{"name":"t","description":"ops@example.com"}]}]}`},
	"resp mcp call":         {EndpointResponses, `{"output":[{"type":"mcp_call","id":"mc","name":"t","arguments":"{\"a\":\"ops@example.com\"}","output":"ops@example.com","error":"ops@example.com"}]}`},
	"resp mcp approval":     {EndpointResponses, `{"output":[{"type":"mcp_approval_request","id":"ma","name":"t","arguments":"{\"a\":\"ops@example.com\"}"}]}`},
	"resp image prompt":     {EndpointResponses, `{"output":[{"type":"image_generation_call","id":"ig","revised_prompt":"ops@example.com","result":"aGVsbG8="}]}`},
	"resp reasoning":        {EndpointResponses, `{"output":[{"type":"reasoning","id":"r","summary":[{"type":"summary_text","text":"ops@example.com"}]}]}`},
	"resp annotations":      {EndpointResponses, `{"output":[{"type":"message","id":"m","content":[{"type":"output_text","text":"x","annotations":[{"type":"url_citation","url":"https://x/?ops@example.com","title":"ops@example.com"}]}]}]}`},
	"resp error":            {EndpointResponses, `{"status":"failed","output":[],"error":{"code":"server_error","message":"ops@example.com"}}`},
	"resp unknown item":     {EndpointResponses, `{"output":[{"type":"future_tool_call","id":"f","payload":{"deep":["ops@example.com"]}}]}`},
	"not json":              {EndpointChat, `upstream says ops@example.com`},
	"chat base64 untouched": {EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":"ops@example.com","audio":{"id":"a","data":"AKIAIOSFODNN7EXAMPLE+AKIAIOSFODNN7EXAMPLE+AKIAIOSFODNN7EXAMPLE+AKIAIOSFODNN7EXAMPLE+","transcript":"ops@example.com"}}}]}`},
}

func TestMaskResponseEveryModelWrittenField(t *testing.T) {
	m := newMasker(t)
	for name, c := range answerFields {
		out, res, err := MaskResponse(c.endpoint, []byte(c.body), m)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if bytes.Contains(out, []byte(pii)) || bytes.Contains(out, []byte("ops\xff")) {
			t.Errorf("%s: PII passed: %s", name, out)
		}
		if res.Counts.Total() == 0 && name != "chat logprobs" && name != "chat duplicate key" {
			t.Errorf("%s: nothing counted", name)
		}
	}
	// Structural members and base64 payloads are left alone.
	out, _, _ := MaskResponse(EndpointChat, []byte(answerFields["chat base64 untouched"].body), m)
	if !bytes.Contains(out, []byte("AKIAIOSFODNN7EXAMPLE+AKIAIOSFODNN7EXAMPLE+AKIAIOSFODNN7EXAMPLE+AKIAIOSFODNN7EXAMPLE+")) {
		t.Errorf("audio data was masked: %s", out)
	}
}

// streamFields are streams with PII in model-written positions other than
// the usual text deltas.
var streamFields = map[string]struct{ endpoint, sse string }{
	"chat reasoning split": {EndpointChat, sseOf([]string{
		chunk(`[{"index":0,"delta":{"reasoning_content":"ops@exa"},"finish_reason":null}]`),
		chunk(`[{"index":0,"delta":{"reasoning_content":"mple.com"},"finish_reason":null}]`),
		chunk(`[{"index":0,"delta":{},"finish_reason":"stop"}]`), "[DONE]"})},
	"chat annotations": {EndpointChat, sseOf([]string{
		chunk(`[{"index":0,"delta":{"annotations":[{"type":"url_citation","url_citation":{"url":"https://x/?ops@example.com","title":"t"}}]},"finish_reason":null}]`), "[DONE]"})},
	"chat content parts": {EndpointChat, sseOf([]string{
		chunk(`[{"index":0,"delta":{"content":[{"type":"text","text":"ops@example.com"}]},"finish_reason":null}]`), "[DONE]"})},
	"chat message in chunk": {EndpointChat, sseOf([]string{
		chunk(`[{"index":0,"message":{"content":"ops@example.com"}}]`), "[DONE]"})},
	"chat second choice": {EndpointChat, sseOf([]string{
		chunk(`[{"index":1,"delta":{"content":"ops@exa"},"finish_reason":null}]`),
		chunk(`[{"index":1,"delta":{"content":"mple.com"},"finish_reason":"stop"}]`), "[DONE]"})},
	"resp code delta": {EndpointResponses, sseOf([]string{
		`{"type":"response.code_interpreter_call_code.delta","item_id":"ci","output_index":0,"delta":"send('ops@exa"}`,
		`{"type":"response.code_interpreter_call_code.delta","item_id":"ci","output_index":0,"delta":"mple.com')"}`,
		`{"type":"response.code_interpreter_call_code.done","item_id":"ci","output_index":0,"code":"send('ops@example.com')"}`})},
	"resp mcp args delta": {EndpointResponses, sseOf([]string{
		`{"type":"response.mcp_call_arguments.delta","item_id":"mc","output_index":0,"delta":"{\"a\":\"ops@exa"}`,
		`{"type":"response.mcp_call_arguments.delta","item_id":"mc","output_index":0,"delta":"mple.com\"}"}`,
		`{"type":"response.mcp_call_arguments.done","item_id":"mc","output_index":0,"arguments":"{\"a\":\"ops@example.com\"}"}`})},
	"resp item done": {EndpointResponses, sseOf([]string{
		`{"type":"response.output_item.done","output_index":0,"item":{"type":"local_shell_call","id":"ls","action":{"type":"exec","command":["mail","ops@example.com"]}}}`})},
	"resp annotation added": {EndpointResponses, sseOf([]string{
		`{"type":"response.output_text.annotation.added","item_id":"m","output_index":0,"content_index":0,"annotation":{"type":"url_citation","url":"https://x/?ops@example.com","title":"t"}}`})},
	"resp completed": {EndpointResponses, sseOf([]string{
		`{"type":"response.completed","response":{"output":[{"type":"image_generation_call","id":"ig","revised_prompt":"ops@example.com"}],"usage":{"input_tokens":1,"output_tokens":1}}}`})},
	"resp failed": {EndpointResponses, sseOf([]string{
		`{"type":"response.failed","response":{"status":"failed","output":[],"error":{"code":"x","message":"ops@example.com"}}}`})},
	"resp data not json": {EndpointResponses, sseOf([]string{`ops@example.com`})},
	"chat duplicate content": {EndpointChat, sseOf([]string{
		chunk(`[{"index":0,"delta":{"content":"ops@example.com","content":"x"},"finish_reason":null}]`), "[DONE]"})},
	"chat invalid utf-8": {EndpointChat, sseOf([]string{
		chunk("[{\"index\":0,\"delta\":{\"content\":\"a\xff ops@example.com\"},\"finish_reason\":null}]"), "[DONE]"})},
	"not json invalid utf-8": {EndpointChat, sseOf([]string{"ops\xff@example.com ops@example.com"})},
}

func TestCopyStreamEveryModelWrittenField(t *testing.T) {
	m := newMasker(t)
	for name, c := range streamFields {
		for _, n := range []int{1, 7, 1 << 20} {
			var out bytes.Buffer
			if _, err := CopyStream(&out, nil, &chunkReader{s: c.sse, n: n}, c.endpoint, m); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if strings.Contains(out.String(), pii) || strings.Contains(joinedText(out.String()), pii) || strings.Contains(out.String(), "\xff") {
				t.Errorf("%s (reads of %d): PII passed:\n%s", name, n, out.String())
			}
		}
	}
}

// joinedText concatenates every "delta" and "reasoning_content" string of
// a stream, as a client reassembles it.
func joinedText(s string) string {
	var b strings.Builder
	for _, field := range []string{`"delta":"`, `"reasoning_content":"`, `"content":"`} {
		for _, part := range strings.Split(s, field)[1:] {
			end := strings.Index(part, `"`)
			if end > 0 {
				b.WriteString(part[:end])
			}
		}
	}
	return b.String()
}

// chunkReader returns its input n bytes at a time.
type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := copy(p, r.s[:min(r.n, len(r.s))])
	r.s = r.s[k:]
	return k, nil
}
