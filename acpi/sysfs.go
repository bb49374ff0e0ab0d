package acpi

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// SysfsTablesDir is where Linux exposes the firmware's ACPI tables (reading
// them needs root). Tables loaded at run time are in its "dynamic"
// subdirectory.
const SysfsTablesDir = "/sys/firmware/acpi/tables"

// ReadSysfs reads the ACPI tables of the running system from dir, normally
// SysfsTablesDir: the tables in dir itself and, when present, those in its
// dynamic/ subdirectory (SSDTs loaded by AML Load/LoadTable).
func ReadSysfs(dir string) ([]Table, error) {
	tabs, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	dyn, err := ReadDir(filepath.Join(dir, "dynamic"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return tabs, nil
		}
		return nil, fmt.Errorf("acpi: dynamic tables: %w", err)
	}
	return append(tabs, dyn...), nil
}
