// The live round trip of the generated Go client (run by test_live_go.py).
// Prints one JSON line of what it observed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	alyx "alyxclient"
)

const password = "correct horse 1"

type recorder struct {
	mu       sync.Mutex
	events   [][]string
	inserted []string
	deleted  []any
}

func titles(docs []alyx.Post) []string {
	out := []string{}
	for _, d := range docs {
		out = append(out, d.Title)
	}
	return out
}

func (r *recorder) record(docs []alyx.Post, change alyx.Change[alyx.Post]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, titles(docs))
	r.inserted = append(r.inserted, titles(change.Inserts)...)
	r.deleted = append(r.deleted, change.Deletes...)
}

func (r *recorder) waitFor(want []string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, e := range r.events {
			if fmt.Sprint(e) == fmt.Sprint(want) {
				r.mu.Unlock()
				return nil
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("never saw %v: %v", want, r.events)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	url, tag := os.Args[1], os.Args[2]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var saved []*alyx.Tokens
	a := alyx.New(alyx.Options{URL: url, OnTokens: func(t *alyx.Tokens) { saved = append(saved, t) }})
	b := alyx.New(alyx.Options{URL: url})
	defer a.Close()
	defer b.Close()
	result := map[string]any{}

	session, err := a.Auth.Register(ctx, "go-a-"+tag+"@example.com", password, nil)
	check(err)
	_, err = b.Auth.Register(ctx, "go-b-"+tag+"@example.com", password, map[string]any{"name": "B"})
	check(err)
	me, err := a.Auth.Me(ctx)
	check(err)
	result["registered"] = len(saved) > 0 && saved[len(saved)-1].AccessToken == a.Auth.Tokens().AccessToken && me.ID == session.User.ID
	uid := session.User.ID
	ids := map[string]string{}
	for _, t := range []string{"p-a", "p-b", "p-c"} {
		doc, err := a.Posts.Create(ctx, alyx.PostCreate{Title: t, Slug: "go-" + tag + "-" + t, AuthorID: uid, Published: alyx.Some(true)})
		check(err)
		ids[t] = doc.ID
	}
	f := alyx.PostFields
	listed, err := a.Posts.List(ctx, a.Posts.Query().Filter(f.AuthorID.Eq(uid), f.Title.Eq("p-b")))
	check(err)
	result["listed"] = titles(listed.Docs)
	updated, err := a.Posts.Update(ctx, ids["p-b"], alyx.PostUpdate{Body: alyx.Some("edited")})
	check(err)
	result["updated_body"] = updated.Body

	rec := &recorder{}
	window := a.Posts.Query().Filter(f.AuthorID.Eq(uid)).Sort(f.Title.Asc()).Limit(2)
	sub, err := a.Posts.Subscribe(ctx, window, rec.record)
	check(err)
	result["snapshot"] = titles(sub.Docs())
	rec.mu.Lock()
	rec.inserted = nil
	rec.mu.Unlock()
	p0, err := a.Posts.Create(ctx, alyx.PostCreate{Title: "p-0", Slug: "go-" + tag + "-p-0", AuthorID: uid, Published: alyx.Some(true)})
	check(err)
	check(rec.waitFor([]string{"p-0", "p-a"}))
	result["after_insert"] = titles(sub.Docs())
	rec.mu.Lock()
	result["inserted"] = append([]string{}, rec.inserted...)
	rec.mu.Unlock()
	check(a.Posts.Delete(ctx, p0.ID))
	deadline := time.Now().Add(10 * time.Second)
	deleted := false
	for !deleted && time.Now().Before(deadline) {
		rec.mu.Lock()
		for _, d := range rec.deleted {
			deleted = deleted || d == p0.ID
		}
		rec.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	result["after_delete"] = titles(sub.Docs())
	result["deleted"] = deleted
	sub.Unsubscribe()

	out, err := a.Functions.Hello(ctx, alyx.HelloInput{Name: alyx.Some("Ada")})
	check(err)
	result["function"] = out.Message

	err = b.Posts.Delete(ctx, ids["p-a"])
	var e *alyx.Error
	if errors.As(err, &e) && errors.Is(err, alyx.ErrForbidden) {
		result["forbidden_code"] = e.Code
		result["forbidden_status"] = e.Status
		result["forbidden_message"] = e.Message
	} else {
		result["forbidden_code"] = fmt.Sprint(err)
	}
	results, err := a.Batch(ctx, a.Posts.OpUpdate(ids["p-c"], alyx.PostUpdate{Body: alyx.Some("batched")}), a.Posts.OpGet(ids["p-a"]))
	check(err)
	first, err := alyx.DecodeResult[alyx.Post](results[0])
	check(err)
	second, err := alyx.DecodeResult[alyx.Post](results[1])
	check(err)
	result["batch"] = []string{first.Body, second.Title}
	data, _ := json.Marshal(result)
	fmt.Println(string(data))
}
