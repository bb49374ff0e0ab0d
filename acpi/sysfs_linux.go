//go:build linux

package acpi

import (
	"fmt"

	uacpi "github.com/u-root/u-root/pkg/acpi"
)

// RSDP is the location of the Root System Description Pointer and of the
// root table it points to.
type RSDP struct {
	Addr    int64 // physical address of the RSDP structure
	SDTAddr int64 // physical address of the RSDT, or of the XSDT when the RSDT address is 0
}

// FindRSDP locates the RSDP of the running system (Linux, root only: it
// uses EFI systab, then the EBDA/BIOS area through /dev/mem), by way of
// u-root's pkg/acpi. Linux does not expose the RSDP under
// /sys/firmware/acpi/tables.
func FindRSDP() (RSDP, error) {
	r, err := uacpi.GetRSDP()
	if err != nil {
		return RSDP{}, fmt.Errorf("acpi: %w", err)
	}
	return RSDP{Addr: r.RSDPAddr(), SDTAddr: r.SDTAddr()}, nil
}
