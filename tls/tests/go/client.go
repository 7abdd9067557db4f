// A Go HTTPS client for tapwire's TLS tracer tests: GETs each URL given (the server's
// certificate is not verified: the test's own, self-signed), prints each status and body size.
// HTTP/2 is negotiated by ALPN when the server offers it; -http1 forces HTTP/1.1. With
// SSLKEYLOGFILE set, the session keys are appended to that file (as curl and Python do).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	http1 := flag.Bool("http1", false, "HTTP/1.1 only")
	flag.Parse()
	cfg := &tls.Config{InsecureSkipVerify: true}
	// The session keys, for tshark to decrypt the same connection (ground truth in tests).
	if name := os.Getenv("SSLKEYLOGFILE"); name != "" {
		f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		cfg.KeyLogWriter = f
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: !*http1}
	if *http1 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	client := &http.Client{Transport: tr}
	for _, url := range flag.Args() {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Println(resp.Status, resp.Proto, n)
	}
}
