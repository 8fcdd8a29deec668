using System.Runtime.InteropServices;

namespace Plover.AbiGen;

// The few functions of libclang's C API (clang-c/Index.h) the generator needs, from the libclang NuGet packages.
// Struct layouts and enum values are those of Index.h, which has kept them stable since clang 3.x.

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXString
{
    public void* data;
    public uint flags;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXCursor
{
    public CursorKind kind;
    public int xdata;
    public void* data0, data1, data2;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXType
{
    public TypeKind kind;
    public void* data0, data1;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXSourceLocation
{
    public void* ptr0, ptr1;
    public uint data;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CXUnsavedFile
{
    public byte* filename;
    public byte* contents;
    public nuint length;
}

internal enum CursorKind
{
    StructDecl = 2,
    UnionDecl = 3,
    EnumDecl = 5,
    FieldDecl = 6,
    EnumConstantDecl = 7,
    FunctionDecl = 8,
    VarDecl = 9,
    TypedefDecl = 20,
    MacroDefinition = 501,
}

internal enum TypeKind
{
    Void = 2, Bool = 3, CharU = 4, UChar = 5, UShort = 8, UInt = 9, ULong = 10, ULongLong = 11,
    CharS = 13, SChar = 14, Short = 16, Int = 17, Long = 18, LongLong = 19, Float = 21, Double = 22,
    Pointer = 101, Record = 105, Enum = 106, Typedef = 107, FunctionNoProto = 110, FunctionProto = 111,
    ConstantArray = 112, IncompleteArray = 114, Elaborated = 119,
}

internal enum EvalKind { Int = 1, Float = 2, StrLiteral = 4 }

internal static unsafe partial class Clang
{
    private const string Lib = "libclang";

    public const uint DetailedPreprocessingRecord = 0x01;
    public const uint SkipFunctionBodies = 0x40;
    public const int ErrorSeverity = 3;

    [LibraryImport(Lib, EntryPoint = "clang_createIndex")] public static partial void* CreateIndex(int excludePch, int displayDiagnostics);
    [LibraryImport(Lib, EntryPoint = "clang_disposeIndex")] public static partial void DisposeIndex(void* index);
    [LibraryImport(Lib, EntryPoint = "clang_parseTranslationUnit2")]
    public static partial int ParseTranslationUnit2(void* index, byte* file, byte** args, int nargs, CXUnsavedFile* unsaved,
        uint nunsaved, uint options, void** tu);
    [LibraryImport(Lib, EntryPoint = "clang_disposeTranslationUnit")] public static partial void DisposeTranslationUnit(void* tu);
    [LibraryImport(Lib, EntryPoint = "clang_getTranslationUnitCursor")] public static partial CXCursor TranslationUnitCursor(void* tu);
    [LibraryImport(Lib, EntryPoint = "clang_getNumDiagnostics")] public static partial uint NumDiagnostics(void* tu);
    [LibraryImport(Lib, EntryPoint = "clang_getDiagnostic")] public static partial void* Diagnostic(void* tu, uint i);
    [LibraryImport(Lib, EntryPoint = "clang_getDiagnosticSeverity")] public static partial int DiagnosticSeverity(void* diag);
    [LibraryImport(Lib, EntryPoint = "clang_formatDiagnostic")] public static partial CXString FormatDiagnostic(void* diag, uint options);
    [LibraryImport(Lib, EntryPoint = "clang_getDiagnosticLocation")] public static partial CXSourceLocation DiagnosticLocation(void* diag);
    [LibraryImport(Lib, EntryPoint = "clang_disposeDiagnostic")] public static partial void DisposeDiagnostic(void* diag);

    [LibraryImport(Lib, EntryPoint = "clang_visitChildren")]
    public static partial uint VisitChildren(CXCursor parent, delegate* unmanaged<CXCursor, CXCursor, void*, int> visitor, void* data);
    [LibraryImport(Lib, EntryPoint = "clang_getCursorSpelling")] public static partial CXString CursorSpelling(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_getCursorType")] public static partial CXType CursorType(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_getCursorLocation")] public static partial CXSourceLocation CursorLocation(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_Location_isFromMainFile")] public static partial int IsFromMainFile(CXSourceLocation l);
    [LibraryImport(Lib, EntryPoint = "clang_getSpellingLocation")]
    public static partial void SpellingLocation(CXSourceLocation l, void** file, uint* line, uint* column, uint* offset);
    [LibraryImport(Lib, EntryPoint = "clang_isCursorDefinition")] public static partial uint IsDefinition(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_getCursorUSR")] public static partial CXString CursorUsr(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_Cursor_isAnonymous")] public static partial uint IsAnonymous(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_Cursor_isMacroFunctionLike")] public static partial uint IsMacroFunctionLike(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_Cursor_isMacroBuiltin")] public static partial uint IsMacroBuiltin(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_Cursor_getStorageClass")] public static partial int StorageClass(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_getTypedefDeclUnderlyingType")] public static partial CXType TypedefUnderlying(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_getEnumConstantDeclValue")] public static partial long EnumConstantValue(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_getEnumDeclIntegerType")] public static partial CXType EnumIntegerType(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_Cursor_Evaluate")] public static partial void* Evaluate(CXCursor c);
    [LibraryImport(Lib, EntryPoint = "clang_EvalResult_getKind")] public static partial EvalKind EvalKindOf(void* r);
    [LibraryImport(Lib, EntryPoint = "clang_EvalResult_getAsLongLong")] public static partial long EvalAsLong(void* r);
    [LibraryImport(Lib, EntryPoint = "clang_EvalResult_getAsUnsigned")] public static partial ulong EvalAsUnsigned(void* r);
    [LibraryImport(Lib, EntryPoint = "clang_EvalResult_getAsStr")] public static partial byte* EvalAsStr(void* r);
    [LibraryImport(Lib, EntryPoint = "clang_EvalResult_dispose")] public static partial void EvalDispose(void* r);

    [LibraryImport(Lib, EntryPoint = "clang_getTypeSpelling")] public static partial CXString TypeSpelling(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_getCanonicalType")] public static partial CXType Canonical(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_getPointeeType")] public static partial CXType Pointee(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_getResultType")] public static partial CXType ResultType(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_getNumArgTypes")] public static partial int NumArgTypes(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_getArgType")] public static partial CXType ArgType(CXType t, uint i);
    [LibraryImport(Lib, EntryPoint = "clang_getArrayElementType")] public static partial CXType ArrayElement(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_getArraySize")] public static partial long ArraySize(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_getTypeDeclaration")] public static partial CXCursor TypeDeclaration(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_Type_getNamedType")] public static partial CXType NamedType(CXType t);
    [LibraryImport(Lib, EntryPoint = "clang_Type_getSizeOf")] public static partial long SizeOf(CXType t);

    [LibraryImport(Lib, EntryPoint = "clang_getCString")] private static partial byte* CString(CXString s);
    [LibraryImport(Lib, EntryPoint = "clang_disposeString")] private static partial void DisposeString(CXString s);

    /// <summary>The text of a CXString, which it then frees.</summary>
    public static string Take(CXString s)
    {
        string text = Marshal.PtrToStringUTF8((nint)CString(s)) ?? "";
        DisposeString(s);
        return text;
    }

    public static string Spelling(CXCursor c) => Take(CursorSpelling(c));
    public static string Spelling(CXType t) => Take(TypeSpelling(t));

    public static uint Line(CXSourceLocation l)
    {
        uint line;
        SpellingLocation(l, null, &line, null, null);
        return line;
    }

    /// <summary>The direct children of a cursor.</summary>
    public static List<CXCursor> Children(CXCursor parent)
    {
        var list = new List<CXCursor>();
        GCHandle h = GCHandle.Alloc(list);
        try
        {
            VisitChildren(parent, &Visit, (void*)GCHandle.ToIntPtr(h));
        }
        finally
        {
            h.Free();
        }
        return list;
    }

    [UnmanagedCallersOnly]
    private static int Visit(CXCursor cursor, CXCursor parent, void* data)
    {
        ((List<CXCursor>)GCHandle.FromIntPtr((nint)data).Target!).Add(cursor);
        return 1; // CXChildVisit_Continue
    }
}
