package devupstream_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/pamctl/pamctl/proxy/devupstream"
)

// newClient serves a mock with o and returns an official SDK client for it.
func newClient(t *testing.T, o devupstream.Options, key string) openai.Client {
	t.Helper()
	srv := httptest.NewServer(devupstream.New(o))
	t.Cleanup(srv.Close)
	return openai.NewClient(
		option.WithBaseURL(srv.URL+"/v1"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	)
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func chatParams(prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: openai.ChatModelGPT4o,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are terse."),
			openai.UserMessage(prompt),
		},
	}
}

func TestChatCompletion(t *testing.T) {
	client := newClient(t, devupstream.Options{}, "sk-any")
	var raw *http.Response
	got, err := client.Chat.Completions.New(ctx(t), chatParams("What is the capital of France?"), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if h := raw.Header.Get(devupstream.MockHeader); h != "true" {
		t.Errorf("%s = %q, want true", devupstream.MockHeader, h)
	}
	if got.Object != "chat.completion" || got.Model != "gpt-4o" || !strings.HasPrefix(got.ID, "chatcmpl-") {
		t.Errorf("object %q model %q id %q", got.Object, got.Model, got.ID)
	}
	if len(got.Choices) != 1 {
		t.Fatalf("%d choices, want 1", len(got.Choices))
	}
	c := got.Choices[0]
	if c.Message.Role != "assistant" || c.FinishReason != "stop" {
		t.Errorf("role %q finish %q", c.Message.Role, c.FinishReason)
	}
	want := devupstream.Prefix + ` You said: "What is the capital of France?" (6 words).`
	if !strings.HasPrefix(c.Message.Content, want) {
		t.Errorf("content %q, want prefix %q", c.Message.Content, want)
	}
	u := got.Usage
	if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v", u)
	}
	if wantOut := int64(len(c.Message.Content)+3) / 4; u.CompletionTokens != wantOut {
		t.Errorf("completion_tokens %d, want %d (len/4)", u.CompletionTokens, wantOut)
	}

	again, err := client.Chat.Completions.New(ctx(t), chatParams("What is the capital of France?"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Choices[0].Message.Content != c.Message.Content || again.Usage.TotalTokens != u.TotalTokens {
		t.Error("the same prompt gave a different answer or usage")
	}
}

func TestChatCompletionLongPromptIsSummarised(t *testing.T) {
	client := newClient(t, devupstream.Options{}, "k")
	prompt := strings.Repeat("word ", 40)
	got, err := client.Chat.Completions.New(ctx(t), chatParams(prompt))
	if err != nil {
		t.Fatal(err)
	}
	text := got.Choices[0].Message.Content
	if want := `"` + strings.Repeat("word ", 12) + `…" (40 words)`; !strings.Contains(text, want) {
		t.Errorf("summary %q should quote 12 of 40 words", text)
	}
}

// streamChat runs a streamed chat completion through the SDK's accumulator
// and returns it with the number of content deltas and usage-only chunks seen.
func streamChat(t *testing.T, client openai.Client, params openai.ChatCompletionNewParams) (openai.ChatCompletionAccumulator, int, int) {
	t.Helper()
	stream := client.Chat.Completions.NewStreaming(ctx(t), params)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	deltas, usageChunks := 0, 0
	for stream.Next() {
		chunk := stream.Current()
		if !acc.AddChunk(chunk) {
			t.Fatalf("accumulator rejected chunk %s", chunk.RawJSON())
		}
		if chunk.Object != "chat.completion.chunk" {
			t.Errorf("chunk object %q", chunk.Object)
		}
		if len(chunk.Choices) == 0 {
			usageChunks++
		} else if chunk.Choices[0].Delta.Content != "" {
			deltas++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return acc, deltas, usageChunks
}

func TestChatStreamMatchesNonStream(t *testing.T) {
	client := newClient(t, devupstream.Options{Deltas: 50}, "k")
	params := chatParams("Summarise the quarterly report in three bullet points, please.")
	plain, err := client.Chat.Completions.New(ctx(t), params)
	if err != nil {
		t.Fatal(err)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	acc, deltas, usageChunks := streamChat(t, client, params)
	if deltas != 50 {
		t.Errorf("%d content deltas, want 50", deltas)
	}
	if usageChunks != 1 {
		t.Errorf("%d usage chunks, want 1", usageChunks)
	}
	if len(acc.Choices) != 1 {
		t.Fatalf("%d accumulated choices", len(acc.Choices))
	}
	if got, want := acc.Choices[0].Message.Content, plain.Choices[0].Message.Content; got != want {
		t.Errorf("streamed text %q\nnon-streamed %q", got, want)
	}
	if acc.Choices[0].FinishReason != "stop" || acc.Choices[0].Message.Role != "assistant" {
		t.Errorf("finish %q role %q", acc.Choices[0].FinishReason, acc.Choices[0].Message.Role)
	}
	pu, su := plain.Usage, acc.Usage
	if su.PromptTokens != pu.PromptTokens || su.CompletionTokens != pu.CompletionTokens || su.TotalTokens != pu.TotalTokens {
		t.Errorf("streamed usage %+v, non-streamed %+v", su, pu)
	}
}

func TestChatStreamWithoutUsage(t *testing.T) {
	client := newClient(t, devupstream.Options{}, "k")
	acc, deltas, usageChunks := streamChat(t, client, chatParams("hello there"))
	if deltas != devupstream.DefaultDeltas {
		t.Errorf("%d deltas, want the default %d", deltas, devupstream.DefaultDeltas)
	}
	if usageChunks != 0 || acc.Usage.TotalTokens != 0 {
		t.Errorf("usage sent without include_usage: %d chunks, %+v", usageChunks, acc.Usage)
	}
	if !strings.HasPrefix(acc.Choices[0].Message.Content, devupstream.Prefix) {
		t.Errorf("streamed text %q lacks the mock prefix", acc.Choices[0].Message.Content)
	}
}

func TestCustomReply(t *testing.T) {
	var (
		mu      sync.Mutex
		prompts []string
	)
	reply := func(p string) string {
		mu.Lock()
		prompts = append(prompts, p)
		mu.Unlock()
		if p == "prefixed" {
			return devupstream.Prefix + " already marked"
		}
		return "héllo wörld ✓"
	}
	client := newClient(t, devupstream.Options{Reply: reply, Deltas: 100}, "k")

	// Content given as text parts; the last user message is the prompt.
	params := openai.ChatCompletionNewParams{
		Model: openai.ChatModelGPT4oMini,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage("first question"),
			openai.AssistantMessage("first answer"),
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("part one"), openai.TextContentPart("part two"),
			}),
		},
	}
	got, err := client.Chat.Completions.New(ctx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if want := devupstream.Prefix + " héllo wörld ✓"; got.Choices[0].Message.Content != want {
		t.Errorf("content %q, want %q", got.Choices[0].Message.Content, want)
	}
	mu.Lock()
	if len(prompts) != 1 || prompts[0] != "part one\npart two" {
		t.Errorf("Reply got prompts %q", prompts)
	}
	mu.Unlock()

	// A streamed multi-byte text is split on rune boundaries, one rune per
	// delta when it is shorter than Deltas.
	acc, deltas, _ := streamChat(t, client, params)
	if acc.Choices[0].Message.Content != got.Choices[0].Message.Content {
		t.Errorf("streamed %q", acc.Choices[0].Message.Content)
	}
	if want := len([]rune(got.Choices[0].Message.Content)); deltas != want {
		t.Errorf("%d deltas, want one per rune (%d)", deltas, want)
	}

	marked, err := client.Chat.Completions.New(ctx(t), chatParams("prefixed"))
	if err != nil {
		t.Fatal(err)
	}
	if want := devupstream.Prefix + " already marked"; marked.Choices[0].Message.Content != want {
		t.Errorf("content %q, want the prefix once: %q", marked.Choices[0].Message.Content, want)
	}
}

func responseParams(prompt string) responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Model:        "gpt-4.1",
		Instructions: openai.String("Answer briefly."),
		Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String(prompt)},
	}
}

func TestResponsesCreate(t *testing.T) {
	client := newClient(t, devupstream.Options{}, "k")
	var raw *http.Response
	got, err := client.Responses.New(ctx(t), responseParams("List three prime numbers."), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(devupstream.MockHeader) != "true" {
		t.Error("mock header missing")
	}
	if got.Object != "response" || got.Status != responses.ResponseStatusCompleted || !strings.HasPrefix(got.ID, "resp_") {
		t.Errorf("object %q status %q id %q", got.Object, got.Status, got.ID)
	}
	if got.Model != "gpt-4.1" || got.Instructions.OfString != "Answer briefly." {
		t.Errorf("model %q instructions %q", got.Model, got.Instructions.OfString)
	}
	if len(got.Output) != 1 {
		t.Fatalf("%d output items", len(got.Output))
	}
	msg := got.Output[0].AsMessage()
	if msg.Type != "message" || msg.Role != "assistant" || msg.Status != "completed" || msg.ID == "" {
		t.Errorf("output item %+v", msg)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != "output_text" || !msg.Content[0].JSON.Annotations.Valid() {
		t.Fatalf("content %s", got.Output[0].RawJSON())
	}
	text := got.OutputText()
	if want := devupstream.Prefix + ` You said: "List three prime numbers."`; !strings.HasPrefix(text, want) {
		t.Errorf("output text %q, want prefix %q", text, want)
	}
	if _, ok := got.JSON.ExtraFields["output_text"]; ok {
		t.Error("output_text is computed by SDKs and must not be on the wire")
	}
	u := got.Usage
	if u.InputTokens <= 0 || u.OutputTokens != int64(len(text)+3)/4 || u.TotalTokens != u.InputTokens+u.OutputTokens {
		t.Errorf("usage %+v for %d bytes of text", u, len(text))
	}
}

func TestResponsesInputItems(t *testing.T) {
	prompts := make(chan string, 1)
	client := newClient(t, devupstream.Options{Reply: func(p string) string { prompts <- p; return "ok" }}, "k")
	params := responses.ResponseNewParams{
		Model: "gpt-4o",
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("earlier", responses.EasyInputMessageRoleUser),
			responses.ResponseInputItemParamOfMessage("reply", responses.EasyInputMessageRoleAssistant),
			responses.ResponseInputItemParamOfMessage(responses.ResponseInputMessageContentListParam{
				responses.ResponseInputContentParamOfInputText("latest question"),
			}, responses.EasyInputMessageRoleUser),
		}},
	}
	got, err := client.Responses.New(ctx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if prompt := <-prompts; prompt != "latest question" {
		t.Errorf("Reply got %q, want the last user input", prompt)
	}
	if got.OutputText() != devupstream.Prefix+" ok" {
		t.Errorf("output %q", got.OutputText())
	}
}

func TestResponsesStream(t *testing.T) {
	client := newClient(t, devupstream.Options{Deltas: 12}, "k")
	params := responseParams("Explain least privilege in one sentence.")
	plain, err := client.Responses.New(ctx(t), params)
	if err != nil {
		t.Fatal(err)
	}

	stream := client.Responses.NewStreaming(ctx(t), params)
	defer stream.Close()
	var (
		types     []string
		deltas    strings.Builder
		completed *responses.Response
		itemID    string
		doneText  string
	)
	for stream.Next() {
		ev := stream.Current()
		if want := int64(len(types)); ev.SequenceNumber != want {
			t.Errorf("%s has sequence_number %d, want %d", ev.Type, ev.SequenceNumber, want)
		}
		types = append(types, ev.Type)
		switch e := ev.AsAny().(type) {
		case responses.ResponseCreatedEvent:
			if e.Response.Status != responses.ResponseStatusInProgress || len(e.Response.Output) != 0 {
				t.Errorf("created: status %q, %d outputs", e.Response.Status, len(e.Response.Output))
			}
		case responses.ResponseInProgressEvent:
		case responses.ResponseOutputItemAddedEvent:
			itemID = e.Item.ID
		case responses.ResponseContentPartAddedEvent:
			if e.ItemID != itemID || e.Part.Type != "output_text" || e.Part.Text != "" {
				t.Errorf("content_part.added %s", e.RawJSON())
			}
		case responses.ResponseTextDeltaEvent:
			if e.ItemID != itemID || e.OutputIndex != 0 || e.ContentIndex != 0 {
				t.Errorf("delta %s", e.RawJSON())
			}
			deltas.WriteString(e.Delta)
		case responses.ResponseTextDoneEvent:
			doneText = e.Text
		case responses.ResponseContentPartDoneEvent:
			if e.Part.Text != deltas.String() {
				t.Errorf("content_part.done text %q", e.Part.Text)
			}
		case responses.ResponseOutputItemDoneEvent:
			if e.Item.ID != itemID || e.Item.Status != "completed" {
				t.Errorf("output_item.done %s", e.RawJSON())
			}
		case responses.ResponseCompletedEvent:
			completed = &e.Response
		default:
			t.Errorf("unexpected event %T %s", e, ev.RawJSON())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}

	wantTypes := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	for range 12 {
		wantTypes = append(wantTypes, "response.output_text.delta")
	}
	wantTypes = append(wantTypes, "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed")
	if !slices.Equal(types, wantTypes) {
		t.Errorf("events %q\nwant %q", types, wantTypes)
	}
	if completed == nil {
		t.Fatal("no response.completed")
	}
	if completed.Status != responses.ResponseStatusCompleted {
		t.Errorf("completed status %q", completed.Status)
	}
	if got := completed.OutputText(); got != deltas.String() || got != doneText || got != plain.OutputText() {
		t.Errorf("completed %q\ndeltas %q\ndone %q\nnon-streamed %q", got, deltas.String(), doneText, plain.OutputText())
	}
	if completed.Usage.TotalTokens != plain.Usage.TotalTokens || completed.Usage.OutputTokens == 0 {
		t.Errorf("completed usage %+v, non-streamed %+v", completed.Usage, plain.Usage)
	}
}

func TestEmbeddings(t *testing.T) {
	client := newClient(t, devupstream.Options{}, "k")
	embed := func(in openai.EmbeddingNewParamsInputUnion, format openai.EmbeddingNewParamsEncodingFormat) *openai.CreateEmbeddingResponse {
		t.Helper()
		res, err := client.Embeddings.New(ctx(t), openai.EmbeddingNewParams{
			Model: openai.EmbeddingModelTextEmbedding3Small, Input: in, EncodingFormat: format,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Object != "list" || res.Model != "text-embedding-3-small" {
			t.Errorf("object %q model %q", res.Object, res.Model)
		}
		for i, d := range res.Data {
			if d.Object != "embedding" || d.Index != int64(i) || len(d.Embedding) != devupstream.Dimensions {
				t.Errorf("data[%d]: object %q index %d %d dims", i, d.Object, d.Index, len(d.Embedding))
			}
			var norm float64
			for _, x := range d.Embedding {
				norm += x * x
			}
			if math.Abs(norm-1) > 1e-5 {
				t.Errorf("data[%d] has norm² %v, want unit length", i, norm)
			}
		}
		return res
	}

	one := embed(openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello")}, "")
	if len(one.Data) != 1 || one.Usage.PromptTokens != 2 || one.Usage.TotalTokens != 2 {
		t.Errorf("%d embeddings, usage %+v", len(one.Data), one.Usage)
	}

	many := embed(openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "world", "hello"}},
		openai.EmbeddingNewParamsEncodingFormatFloat)
	if len(many.Data) != 3 {
		t.Fatalf("%d embeddings for 3 inputs", len(many.Data))
	}
	if !slices.Equal(many.Data[0].Embedding, one.Data[0].Embedding) || !slices.Equal(many.Data[2].Embedding, one.Data[0].Embedding) {
		t.Error("the same input gave different embeddings")
	}
	if slices.Equal(many.Data[0].Embedding, many.Data[1].Embedding) {
		t.Error("different inputs gave the same embedding")
	}

	b64 := embed(openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello")}, openai.EmbeddingNewParamsEncodingFormatBase64)
	for i, x := range b64.Data[0].Embedding {
		if float32(x) != float32(one.Data[0].Embedding[i]) {
			t.Errorf("base64 dim %d = %v, float %v", i, x, one.Data[0].Embedding[i])
		}
	}

	tokens := embed(openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: []int64{15339, 1917, 0}}, "")
	if len(tokens.Data) != 1 || tokens.Usage.PromptTokens != 3 {
		t.Errorf("token input: %d embeddings, usage %+v", len(tokens.Data), tokens.Usage)
	}
	arrays := embed(openai.EmbeddingNewParamsInputUnion{OfArrayOfTokenArrays: [][]int64{{1, 2}, {3}}}, "")
	if len(arrays.Data) != 2 || arrays.Usage.PromptTokens != 3 {
		t.Errorf("token arrays: %d embeddings, usage %+v", len(arrays.Data), arrays.Usage)
	}
}

func TestModels(t *testing.T) {
	client := newClient(t, devupstream.Options{}, "k")
	page, err := client.Models.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		if m.Object != "model" || m.Created == 0 || m.OwnedBy == "" {
			t.Errorf("model %s", m.RawJSON())
		}
		ids = append(ids, m.ID)
	}
	want := []string{"gpt-4o", "gpt-4o-mini", "gpt-4.1", "text-embedding-3-small", "o4-mini"}
	if !slices.Equal(ids, want) || !slices.Equal(devupstream.ModelIDs(), want) {
		t.Errorf("models %q, ModelIDs %q, want %q", ids, devupstream.ModelIDs(), want)
	}

	m, err := client.Models.Get(ctx(t), "o4-mini")
	if err != nil || m.ID != "o4-mini" {
		t.Errorf("get o4-mini: %v %+v", err, m)
	}
	_, err = client.Models.Get(ctx(t), "gpt-9")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
		t.Errorf("get unknown model: %v", err)
	}
}

func TestRequireKey(t *testing.T) {
	o := devupstream.Options{RequireKey: "sk-mock-secret"}
	for _, key := range []string{"sk-wrong", "sk-mock-secre", ""} {
		client := newClient(t, o, key)
		_, err := client.Chat.Completions.New(ctx(t), chatParams("hi"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("key %q: error %v is not an *openai.Error", key, err)
		}
		if apiErr.StatusCode != http.StatusUnauthorized || apiErr.Code != "invalid_api_key" || apiErr.Type != "invalid_request_error" {
			t.Errorf("key %q: status %d code %q type %q", key, apiErr.StatusCode, apiErr.Code, apiErr.Type)
		}
		if strings.Contains(apiErr.Message, "sk-mock-secret") {
			t.Error("the error message reveals the required key")
		}
		if apiErr.Response.Header.Get(devupstream.MockHeader) != "true" {
			t.Error("mock header missing on 401")
		}

		// Streams are refused the same way, before any event.
		stream := client.Responses.NewStreaming(ctx(t), responseParams("hi"))
		if stream.Next() {
			t.Errorf("key %q: a stream event arrived", key)
		}
		if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
			t.Errorf("key %q: stream error %v", key, stream.Err())
		}
	}

	client := newClient(t, o, "sk-mock-secret")
	if _, err := client.Chat.Completions.New(ctx(t), chatParams("hi")); err != nil {
		t.Errorf("right key refused: %v", err)
	}
	if _, err := client.Models.List(ctx(t)); err != nil {
		t.Errorf("right key refused on models: %v", err)
	}
}

func TestConcurrentStreams(t *testing.T) {
	client := newClient(t, devupstream.Options{Deltas: 50}, "k")
	want, err := client.Chat.Completions.New(ctx(t), chatParams("load"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for range 20 {
		wg.Go(func() {
			stream := client.Chat.Completions.NewStreaming(ctx(t), chatParams("load"))
			defer stream.Close()
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if stream.Err() != nil {
				errs <- stream.Err().Error()
			} else if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != want.Choices[0].Message.Content {
				errs <- "a concurrent stream accumulated a different text"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
