// Command composecheck loads a compose file with compose-go, the loader
// `docker compose` itself uses, so that a file is checked as the tool reads
// it without a Docker engine: the schema, interpolation, references between
// services, networks, volumes and secrets. It prints the services it found.
//
//	composecheck -f deployments/compose/compose.yaml [-env-file FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	file := flag.String("f", "", "compose file")
	envFile := flag.String("env-file", "", "environment file (as docker compose --env-file)")
	flag.Parse()
	if *file == "" {
		flag.Usage()
		os.Exit(2)
	}
	opts := []cli.ProjectOptionsFn{cli.WithWorkingDirectory(filepath.Dir(*file)), cli.WithOsEnv, cli.WithName("longlink")}
	if *envFile != "" {
		opts = append(opts, cli.WithEnvFiles(*envFile), cli.WithDotEnv)
	}
	po, err := cli.NewProjectOptions([]string{*file}, opts...)
	if err != nil {
		log.Fatal(err)
	}
	p, err := po.LoadProject(context.Background())
	if err != nil {
		log.Fatalf("%s: %v", *file, err)
	}
	var names []string
	for name, s := range p.Services {
		ports := ""
		for _, pt := range s.Ports {
			ports += fmt.Sprintf(" %s:%d/%s", pt.Published, pt.Target, pt.Protocol)
		}
		names = append(names, fmt.Sprintf("%s image=%s user=%s healthcheck=%v ports=%s", name, s.Image, s.User, s.HealthCheck != nil, ports))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println("service", n)
	}
	fmt.Printf("composecheck: %s: %d services valid\n", *file, len(p.Services))
}
