package broker

import (
	"errors"
	"fmt"
)

// Code classifies an error for HTTP status mapping and CLI exit codes.
type Code string

// Error codes. Their meaning is stable: the HTTP API and the CLI map them.
const (
	CodeInvalid         Code = "invalid"           // bad input; nothing changed
	CodeUnauthenticated Code = "unauthenticated"   // no or bad session
	CodeForbidden       Code = "forbidden"         // policy says no
	CodeNotFound        Code = "not_found"         // no such thing
	CodeConflict        Code = "conflict"          // the state does not allow it (already denied, expired...)
	CodeTooLarge        Code = "too_large"         // the request body is over the endpoint's cap
	CodeInternal        Code = "internal"          // our fault; detail is logged, not shown
	CodePending         Code = "pending_approval"  // not an error so much as "not yet"
	CodeUnavailable     Code = "store_unavailable" // the shared store has no quorum; nothing changed, retry
)

// ErrStoreUnavailable is what a store returns when it cannot answer with
// quorum in time (etcd without a majority, or unreachable). Nothing was
// written; the caller may retry once /readyz is green again.
var ErrStoreUnavailable = errors.New("the store is unavailable (no quorum, or unreachable)")

// ErrRecordUnreadable is what a store wraps in the error of a record it
// holds but can never read, however often it is asked: the record fails
// its authenticator (someone wrote the store without the master key) or
// is not a record. Not a record another build wrote (a newer record
// version, or a field of another JSON type: that build reads it), and
// not an outage. The broker takes such a grant for
// one that does not stand.
var ErrRecordUnreadable = errors.New("the stored record cannot be read: it fails its authenticator or is not a record")

// Error is an error safe to show a user: Code and Message are public, Err is
// the wrapped detail for logs.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, CodeInternal for foreign errors.
func ErrorCode(err error) Code {
	var su *StepUpError
	if errors.As(err, &su) {
		return CodeStepUpRequired
	}
	if errors.Is(err, ErrStoreUnavailable) { // however the service wrapped it
		return CodeUnavailable
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, ErrNotFound) {
		return CodeNotFound
	}
	return CodeInternal
}

// ErrorMessage returns the user-safe message of err.
func ErrorMessage(err error) string {
	var su *StepUpError
	if errors.As(err, &su) {
		return su.Message()
	}
	if errors.Is(err, ErrStoreUnavailable) {
		return "the broker's store is unavailable (its etcd cluster has no quorum or cannot be reached): nothing changed; retry once the broker's /readyz is green"
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if errors.Is(err, ErrNotFound) {
		return "no such request (list them with: pamctl requests)"
	}

	return "internal error (the server log has details)"
}
