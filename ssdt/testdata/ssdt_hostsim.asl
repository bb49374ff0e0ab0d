DefinitionBlock ("", "SSDT", 2, "ACPIDG", "HOSTSIM", 1)
{
    Method (\HSTW, 2, Serialized)
    {
        OperationRegion (HSTR, SystemMemory, Arg0, 4)
        Field (HSTR, DWordAcc, NoLock, Preserve) { HSTV, 32 }
        HSTV = Arg1
    }
}
