package devupstream

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
)

// Dimensions is the length of every embedding the mock returns.
const Dimensions = 8

// maxEmbeddingInputs is OpenAI's limit on inputs per request.
const maxEmbeddingInputs = 2048

type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
}

// embeddingInput is one input: text, or a token array hashed as its JSON.
type embeddingInput struct {
	key    []byte
	tokens int64
}

// inputs splits input into its items: a string, an array of strings, an
// array of token ids, or an array of token-id arrays.
func (q *embeddingsRequest) inputs() ([]embeddingInput, *apiError) {
	raw := bytes.TrimSpace(q.Input)
	if len(raw) == 0 || bytes.Equal(raw, jsonNull) {
		return nil, missingParam("input")
	}
	bad := invalidParam("input", "expected a string, an array of strings, an array of token ids or an array of token-id arrays.")
	text := func(raw json.RawMessage) (embeddingInput, bool) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return embeddingInput{}, false
		}
		return embeddingInput{key: []byte("text:" + s), tokens: countTokens(s)}, true
	}
	tokens := func(raw json.RawMessage) (embeddingInput, bool) {
		var ids []int64
		if json.Unmarshal(raw, &ids) != nil || len(ids) == 0 {
			return embeddingInput{}, false
		}
		key := []byte("tokens:")
		for _, id := range ids {
			key = strconv.AppendInt(append(key, ' '), id, 10)
		}
		return embeddingInput{key: key, tokens: int64(len(ids))}, true
	}
	if raw[0] == '"' {
		in, ok := text(raw)
		if !ok {
			return nil, bad
		}
		return []embeddingInput{in}, nil
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return nil, bad
	}
	if first := bytes.TrimSpace(items[0]); len(first) > 0 && first[0] != '"' && first[0] != '[' {
		in, ok := tokens(raw) // one input given as token ids
		if !ok {
			return nil, bad
		}
		return []embeddingInput{in}, nil
	}
	if len(items) > maxEmbeddingInputs {
		return nil, invalidParam("input", "at most 2048 inputs per request.")
	}
	out := make([]embeddingInput, len(items))
	for i, item := range items {
		item = bytes.TrimSpace(item)
		var ok bool
		if len(item) > 0 && item[0] == '[' {
			out[i], ok = tokens(item)
		} else {
			out[i], ok = text(item)
		}
		if !ok {
			return nil, bad
		}
	}
	return out, nil
}

// vector derives a unit-length embedding from the SHA-256 of key: each
// 4-byte word becomes a float32 in [-1, 1].
func vector(key []byte) [Dimensions]float32 {
	sum := sha256.Sum256(key)
	var v [Dimensions]float32
	var norm float64
	for i := range v {
		u := binary.BigEndian.Uint32(sum[4*i:])
		x := float64(u)/float64(math.MaxUint32)*2 - 1
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	if norm > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / norm)
		}
	}
	return v
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

func (h *handler) embeddings(w http.ResponseWriter, r *http.Request, body []byte) *apiError {
	var req embeddingsRequest
	if e := decode(body, &req); e != nil {
		return e
	}
	if req.Model == "" {
		return missingParam("model")
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		return invalidParam("encoding_format", `expected "float" or "base64".`)
	}
	inputs, e := req.inputs()
	if e != nil {
		return e
	}
	data := make([]embedding, len(inputs))
	var tokens int64
	for i, in := range inputs {
		v := vector(in.key)
		data[i] = embedding{Object: "embedding", Index: i}
		if req.EncodingFormat == "base64" {
			// Little-endian float32s, base64-encoded, as OpenAI sends them.
			buf := make([]byte, 0, 4*Dimensions)
			for _, f := range v {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(f))
			}
			data[i].Embedding = base64.StdEncoding.EncodeToString(buf)
		} else {
			data[i].Embedding = v[:]
		}
		tokens += in.tokens
	}
	type usage struct {
		PromptTokens int64 `json:"prompt_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	}
	writeJSON(w, http.StatusOK, struct {
		Object string      `json:"object"`
		Data   []embedding `json:"data"`
		Model  string      `json:"model"`
		Usage  usage       `json:"usage"`
	}{"list", data, req.Model, usage{tokens, tokens}})
	return nil
}
