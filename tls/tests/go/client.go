// A Go HTTPS client for tapwire's TLS tracer tests: GETs each URL given (the server's
// certificate is not verified: the test's own, self-signed), prints each status and body size.
// HTTP/2 is negotiated by ALPN when the server offers it; -http1 forces HTTP/1.1.
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
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: !*http1}
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
