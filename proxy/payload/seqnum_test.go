package payload

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/scrub"
)

// seqs returns the sequence_numbers of a relayed Responses stream, in
// order, and fails when they are not contiguous and increasing.
func seqs(t *testing.T, out string) []int64 {
	t.Helper()
	var got []int64
	for _, ev := range readEvents(t, out) {
		var o struct {
			Seq *int64 `json:"sequence_number"`
		}
		if json.Unmarshal([]byte(ev.Data), &o) != nil || o.Seq == nil {
			continue
		}
		got = append(got, *o.Seq)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Errorf("sequence numbers %v are not contiguous\n%s", got, out)
			break
		}
	}
	return got
}

// Text the masker or the key scrubber holds back is released as an extra
// delta event; it takes the place of the event it precedes in the
// numbering, and every later event is numbered one higher, so the
// sequence numbers the client gets stay contiguous and increasing (fast
// and generic paths, before an event that ends the field, before the
// terminal event, at the end of a stream cut short).
func TestExtraDeltasKeepSequenceNumbersContiguous(t *testing.T) {
	keys := scrub.New("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEF")
	created := `{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4o","output":[]}}`
	textDone := func(seq int, text string) string {
		return strings.Replace(`{"type":"response.output_text.done","sequence_number":SEQ,"item_id":"msg_1","output_index":0,"content_index":0,"text":TEXT,"logprobs":[]}`, "SEQ", itoa(seq), 1)
	}
	completed := func(seq int) string {
		return `{"type":"response.completed","sequence_number":` + itoa(seq) + `,"response":{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o","output":[]}}`
	}
	for _, c := range []struct {
		name   string
		events []string
		want   int // events with a sequence number the client gets
	}{
		{"before .done", []string{created, respDelta(1, "msg_1", "call 555"), respDelta(2, "msg_1", " or sk-"), strings.Replace(textDone(3, ""), "TEXT", `"call 555 or sk-"`, 1), completed(4)}, 0},
		{"before the terminal event", []string{created, respDelta(1, "msg_1", "call 555"), respDelta(2, "msg_1", " or 666"), completed(3)}, 0},
		{"two fields before the terminal event", []string{created, respDelta(1, "msg_1", "call 555"), strings.Replace(respDelta(2, "msg_1", "or 666"), `"content_index":0`, `"content_index":1`, 1), respDelta(3, "msg_1", " then"), completed(4)}, 0},
		{"at the end of a stream cut short", []string{created, respDelta(1, "msg_1", "call 555"), respDelta(2, "msg_1", " or sk-")}, 0},
	} {
		for _, fast := range []bool{true, false} {
			for _, scrubOnly := range []bool{false, true} {
				old := fastPaths
				fastPaths = fast
				var out bytes.Buffer
				in := respEvents(c.events...)
				var err error
				if scrubOnly {
					r, rerr := NewScrubbedRelay(&out, nil, strings.NewReader(in), EndpointResponses, nil, keys)
					if rerr != nil {
						t.Fatal(rerr)
					}
					for r.Step() {
					}
					_, err = r.Result()
				} else {
					_, err = CopyStream(&out, nil, strings.NewReader(in), EndpointResponses, testMasker(t))
				}
				fastPaths = old
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				got := seqs(t, out.String())
				if len(got) == 0 || got[0] != 0 {
					t.Errorf("%s (fast %v, scrub only %v): sequence numbers %v", c.name, fast, scrubOnly, got)
				}
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
