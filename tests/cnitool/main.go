// Command cnitool runs a network configuration list through libcni, the library
// container runtimes use, the way upstream cnitool does:
//
//	cnitool add|check|del <net> <netns-path>
//
// Environment: NETCONFPATH, CNI_PATH, CNI_IFNAME, CNI_ARGS, CAP_ARGS as upstream,
// plus CNI_CACHE_DIR (libcni's cache dir) and CNI_CONTAINERID (container ID override).
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func getenv(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// parseArgs splits CNI_ARGS ("K=V;K2=V2") into pairs.
func parseArgs(s string) ([][2]string, error) {
	var out [][2]string
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid CNI_ARGS pair %q", kv)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func run(cmd, name, netnsArg string) error {
	list, err := libcni.LoadConfList(getenv("NETCONFPATH", "/etc/cni/net.d"), name)
	if err != nil {
		return err
	}
	netns, err := filepath.Abs(netnsArg)
	if err != nil {
		return err
	}
	rt := &libcni.RuntimeConf{NetNS: netns, IfName: getenv("CNI_IFNAME", "eth0")}
	rt.ContainerID = os.Getenv("CNI_CONTAINERID")
	if rt.ContainerID == "" {
		sum := sha512.Sum512([]byte(netns))
		rt.ContainerID = fmt.Sprintf("cnitool-%x", sum[:10])
	}
	if s := os.Getenv("CNI_ARGS"); s != "" {
		if rt.Args, err = parseArgs(s); err != nil {
			return err
		}
	}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &rt.CapabilityArgs); err != nil {
			return fmt.Errorf("CAP_ARGS: %w", err)
		}
	}
	cni := libcni.NewCNIConfigWithCacheDir(
		filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CNI_CACHE_DIR"), nil)
	ctx := context.Background()
	switch cmd {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return result.Print()
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	case "del":
		return cni.DelNetworkList(ctx, list, rt)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: cnitool add|check|del <net> <netns-path>")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "cnitool:", err)
		os.Exit(1)
	}
}
