package aml_test

import (
	"fmt"

	"github.com/acpidiag/acpidiag/aml"
)

// A thermal zone whose _TMP counts its evaluations, with the ASL it encodes:
//
//	ThermalZone (\_TZ.DIAG) {
//	    Name (CNT, Zero)
//	    Method (_TMP, 0, Serialized) {
//	        Increment (CNT)
//	        Return (3000)
//	    }
//	    Name (_TZP, 10)
//	}
func Example() {
	body, err := aml.Encode(
		aml.ThermalZone(`\_TZ.DIAG`,
			aml.Name("CNT", aml.Zero),
			aml.Method("_TMP", 0, aml.Serialized,
				aml.Increment(aml.NameString("CNT")),
				aml.Return(aml.Int(3000)),
			),
			aml.Name("_TZP", aml.Int(10)),
		),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("% X\n", body)

	// Errors name the construct, the object and where it is.
	_, err = aml.Encode(aml.Scope(`\_SB`, aml.Method("FOO", 0, aml.NotSerialized, aml.Store(aml.One, aml.Local(8)))))
	fmt.Println(err)
	// Output:
	// 5B 85 28 5C 2E 5F 54 5A 5F 44 49 41 47 08 43 4E 54 5F 00 14 0F 5F 54 4D 50 08 75 43 4E 54 5F A4 0B B8 0B 08 5F 54 5A 50 0A 0A
	// aml: Local (in \_SB > FOO): index 8, want 0-7: value out of range
}
