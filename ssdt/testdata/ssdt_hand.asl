DefinitionBlock ("", "SSDT", 2, "ACPIDG", "DIAGSSDT", 1)
{
    External (\_SB.PCI0, DeviceObj)
    Scope (\_SB.PCI0)
    {
        Device (DGIV)
        {
            Name (_ADR, 0x00100000)
            OperationRegion (DGPC, PCI_Config, Zero, 0x20)
            Field (DGPC, DWordAcc, NoLock, Preserve)
            {
                PVID, 32,
                Offset (0x18),
                BAR2, 32,
                BAR3, 32
            }
            Field (DGPC, WordAcc, NoLock, Preserve)
            {
                Offset (0x04),
                PCMD, 16
            }
        }
    }
    Scope (\_TZ)
    {
        ThermalZone (DIAG)
        {
            Name (DGFT, Zero)
            Name (DGOS, Zero)
            Name (DGPV, 10)
            Name (DGBA, One)
            Method (_INI, 0, NotSerialized)
            {
                Local0 = 0x80000000
                If (_OSI ("Linux")) { Local0 |= 0x01 }
                If (_OSI ("Windows 2000")) { Local0 |= 0x02 }
                If (_OSI ("Windows 2001")) { Local0 |= 0x04 }
                If (_OSI ("Windows 2006")) { Local0 |= 0x08 }
                If (_OSI ("Windows 2009")) { Local0 |= 0x10 }
                If (_OSI ("Windows 2012")) { Local0 |= 0x20 }
                If (_OSI ("Windows 2013")) { Local0 |= 0x40 }
                If (_OSI ("Windows 2015")) { Local0 |= 0x80 }
                If (_OSI ("Darwin")) { Local0 |= 0x0100 }
                DGOS = Local0
            }
            Method (_TZP, 0, NotSerialized) { Return (DGPV) }
            Method (_CRT, 0, NotSerialized) { Return (3732) }
            Method (_TMP, 0, Serialized)
            {
                Local0 = (\_SB.PCI0.DGIV.BAR2 & 0xFFFFFFF0)
                If (((Local0 ^ DGBA) | \_SB.PCI0.DGIV.BAR3))
                {
                    If (((\_SB.PCI0.DGIV.PVID == 0x11101AF4) && !\_SB.PCI0.DGIV.BAR3) &&
                        (Local0 && (Local0 < 0xFFFF0001)))
                    {
                        \_SB.PCI0.DGIV.PCMD |= 0x02
                        DGBA = Local0
                    }
                    Else
                    {
                        DGBA = One
                        Return (3000)
                    }
                }
                OperationRegion (DGMR, SystemMemory, DGBA, 0x00010000)
                Field (DGMR, DWordAcc, NoLock, Preserve)
                {
                    MAGC, 32, VERS, 32, HSIZ, 32, RSIZ, 32,
                    SEQN, 32, TICK, 32, BOOT, 32, PERD, 32,
                    TMRL, 32, ECHL, 32, ECHH, 32, OSIB, 32,
                    REVN, 32, MACK, 32, MRES, 32, MVAL, 32,
                    HSTL, 32, HSTH, 32, MCMD, 32, MARG, 32,
                    MSEQ, 32
                }
                Local1 = (SEQN | One)
                SEQN = Local1
                If (DGFT)
                {
                    Local3 = MSEQ
                    If ((Local3 != MACK))
                    {
                        Local4 = MCMD
                        If ((Local4 == 0x02))
                        {
                            Local5 = MARG
                            If (((Local5 - One) < 36000))
                            {
                                DGPV = Local5
                                Notify (DIAG, 0x81)
                                MRES = 0x02
                            }
                            Else
                            {
                                MRES = 0x03
                            }
                            MVAL = DGPV
                        }
                        ElseIf ((Local4 == One))
                        {
                            MRES = One
                            MVAL = MARG
                        }
                        Else
                        {
                            MRES = 0x04
                            MVAL = Zero
                        }
                        MACK = Local3
                    }
                }
                Else
                {
                    DGFT = One
                    MAGC = 0x31474441
                    VERS = One
                    HSIZ = 0x0100
                    RSIZ = 0x00010000
                    BOOT++
                    TICK = Zero
                    OSIB = DGOS
                    REVN = _REV
                }
                TICK++
                PERD = DGPV
                TMRL = Timer
                ECHL = HSTL
                ECHH = HSTH
                SEQN = (Local1 + One)
                Return (3000)
            }
        }
    }
}
