using System.Diagnostics;
using System.Text;

namespace Plover.AbiGen;

/// <summary>
/// Reads every declaration of the header with libclang: object-like macros, enums, structs (and the outside
/// structs they use, such as struct iovec), typedefs of function pointers. Anything else it cannot mirror
/// faithfully (a function declaration, a bit field, an array of structs) is an error naming its line: a new
/// kind of declaration in the header must fail the build, never vanish from the mirror.
/// </summary>
internal sealed unsafe class HeaderReader
{
    private static readonly Dictionary<string, string> FixedWidth = new()
    {
        ["uint8_t"] = "byte", ["int8_t"] = "sbyte", ["uint16_t"] = "ushort", ["int16_t"] = "short",
        ["uint32_t"] = "uint", ["int32_t"] = "int", ["uint64_t"] = "ulong", ["int64_t"] = "long",
        ["size_t"] = "nuint", ["ssize_t"] = "nint", ["uintptr_t"] = "nuint", ["intptr_t"] = "nint", ["ptrdiff_t"] = "nint",
    };

    private const string MacroPrefix = "plover_abigen_";

    private readonly string _header;
    private readonly string[] _args;
    private readonly HeaderModel _model = new();
    private readonly Dictionary<string, string> _recordNames = new();      // record USR -> C# name
    private readonly Dictionary<string, string> _recordKeys = new();       // record USR -> layout key
    private readonly HashSet<string> _emittedRecords = [];                  // USRs
    private readonly List<CXCursor> _outsideRecords = [];
    private readonly HashSet<string> _functionPointerNames = [];
    private readonly List<string> _errors = [];
    private bool _inlineAliases;

    public HeaderReader(string header)
    {
        _header = Path.GetFullPath(header);
        _args = ["-xc", "-std=gnu11", "-isystem", CompilerIncludeDir(), "-I", Path.GetDirectoryName(_header)!];
    }

    public HeaderModel Read()
    {
        void* index = Clang.CreateIndex(0, 0);
        try
        {
            void* tu = Parse(index, _header, null, Clang.DetailedPreprocessingRecord | Clang.SkipFunctionBodies);
            try
            {
                List<CXCursor> top = Clang.Children(Clang.TranslationUnitCursor(tu)).Where(FromMainFile).ToList();
                NameRecords(top);
                foreach (CXCursor c in top)
                    ReadDeclaration(c);
                // Outside structs used by the header's (struct iovec), and those they use in turn.
                for (int i = 0; i < _outsideRecords.Count; i++)
                    _model.Structs.Insert(i, ReadStruct(_outsideRecords[i], fromHeader: false));
                ReadMacros(index, top.Where(c => c.kind == CursorKind.MacroDefinition).ToList());
            }
            finally
            {
                Clang.DisposeTranslationUnit(tu);
            }
        }
        finally
        {
            Clang.DisposeIndex(index);
        }
        if (_errors.Count > 0)
            throw new InvalidDataException(string.Join("\n", _errors));
        return _model;
    }

    // -------------------------------------------------------------------------------- parsing

    private void* Parse(void* index, string file, string? contents, uint options)
    {
        var pinned = new List<nint>();
        byte* Utf8(string s)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(s + "\0");
            nint p = System.Runtime.InteropServices.Marshal.AllocHGlobal(bytes.Length);
            System.Runtime.InteropServices.Marshal.Copy(bytes, 0, p, bytes.Length);
            pinned.Add(p);
            return (byte*)p;
        }
        try
        {
            byte** argv = stackalloc byte*[_args.Length];
            for (int i = 0; i < _args.Length; i++)
                argv[i] = Utf8(_args[i]);
            CXUnsavedFile unsaved = default;
            if (contents != null)
                unsaved = new CXUnsavedFile { filename = Utf8(file), contents = Utf8(contents), length = (nuint)Encoding.UTF8.GetByteCount(contents) };
            void* tu;
            int rc = Clang.ParseTranslationUnit2(index, Utf8(file), argv, _args.Length, contents != null ? &unsaved : null,
                contents != null ? 1u : 0u, options, &tu);
            if (rc != 0)
                throw new InvalidDataException($"libclang could not parse {file} (error {rc})");
            return tu;
        }
        finally
        {
            foreach (nint p in pinned)
                System.Runtime.InteropServices.Marshal.FreeHGlobal(p);
        }
    }

    /// <summary>Errors of the translation unit as "line: message"; the lines are those of its main file.</summary>
    private static List<(uint Line, string Text)> Errors(void* tu)
    {
        var list = new List<(uint, string)>();
        uint n = Clang.NumDiagnostics(tu);
        for (uint i = 0; i < n; i++)
        {
            void* d = Clang.Diagnostic(tu, i);
            if (Clang.DiagnosticSeverity(d) >= Clang.ErrorSeverity)
                list.Add((Clang.Line(Clang.DiagnosticLocation(d)), Clang.Take(Clang.FormatDiagnostic(d, 0x1 | 0x2))));
            Clang.DisposeDiagnostic(d);
        }
        return list;
    }

    /// <summary>The C compiler's own include folder (stddef.h and friends): the libclang package ships none.</summary>
    private static string CompilerIncludeDir()
    {
        foreach (string cc in new[] { Environment.GetEnvironmentVariable("CC") ?? "", "cc", "gcc", "clang" })
        {
            if (cc.Length == 0)
                continue;
            try
            {
                using var p = Process.Start(new ProcessStartInfo(cc, "-print-file-name=include")
                    { RedirectStandardOutput = true, RedirectStandardError = true })!;
                string dir = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                if (p.ExitCode == 0 && File.Exists(Path.Combine(dir, "stddef.h")))
                    return dir;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // not installed: try the next
            }
        }
        throw new InvalidOperationException("no C compiler include folder with stddef.h found (cc -print-file-name=include); install gcc");
    }

    private static bool FromMainFile(CXCursor c) => Clang.IsFromMainFile(Clang.CursorLocation(c)) != 0;

    private static uint Line(CXCursor c) => Clang.Line(Clang.CursorLocation(c));

    private void Error(CXCursor c, string message) => _errors.Add($"{Path.GetFileName(_header)}:{Line(c)}: {message}");

    // -------------------------------------------------------------------------------- declarations

    /// <summary>A struct typedef'd to a name is called by that name; otherwise "struct tag" (C# name: Tag).</summary>
    private void NameRecords(List<CXCursor> top)
    {
        foreach (CXCursor c in top.Where(c => c.kind == CursorKind.TypedefDecl))
        {
            CXType t = Desugar(Clang.TypedefUnderlying(c));
            if (t.kind != TypeKind.Record)
                continue;
            string usr = Usr(Clang.TypeDeclaration(t));
            _recordNames.TryAdd(usr, Clang.Spelling(c));
            _recordKeys.TryAdd(usr, Clang.Spelling(c));
        }
    }

    private void ReadDeclaration(CXCursor c)
    {
        switch (c.kind)
        {
            case CursorKind.StructDecl or CursorKind.UnionDecl:
                if (Clang.IsDefinition(c) != 0 && _emittedRecords.Add(Usr(c)))
                    _model.Structs.Add(ReadStruct(c, fromHeader: true));
                break;
            case CursorKind.EnumDecl:
                ReadEnum(c);
                break;
            case CursorKind.TypedefDecl:
                ReadTypedef(c);
                break;
            case CursorKind.FunctionDecl:
                // static inline helpers are the host's (plover_pick_variant); the library's exports are typedefs
                if (Clang.StorageClass(c) != 3 /* CX_SC_Static */)
                    Error(c, $"function declaration {Clang.Spelling(c)}: the ABI describes functions as typedefs of function pointers");
                break;
            case CursorKind.MacroDefinition:
                break; // ReadMacros
            case CursorKind.VarDecl:
                Error(c, $"variable {Clang.Spelling(c)}: the ABI has no data exports");
                break;
            default:
                if ((int)c.kind < 100) // declarations; preprocessing cursors (500+) such as #include are fine
                    Error(c, $"declaration {Clang.Spelling(c)} of kind {(int)c.kind} is not mirrored by the generator");
                break;
        }
    }

    private StructDef ReadStruct(CXCursor c, bool fromHeader)
    {
        string usr = Usr(c);
        string tag = Clang.Spelling(c);
        bool union = c.kind == CursorKind.UnionDecl;
        string name = RecordName(c);
        string key = _recordKeys.TryGetValue(usr, out string? k) ? k : (union ? "union " : "struct ") + tag;
        var fields = new List<Field>();
        foreach (CXCursor f in Clang.Children(c))
        {
            if (f.kind == CursorKind.StructDecl || f.kind == CursorKind.UnionDecl)
            {
                Error(f, $"nested struct or union in {key}: not mirrored by the generator; declare it on its own");
                continue;
            }
            if (f.kind != CursorKind.FieldDecl)
                continue;
            fields.Add(ReadField(f, key));
        }
        return new StructDef(key, name, union, fields, Clang.SizeOf(Clang.CursorType(c)), fromHeader ? Line(c) : 0, fromHeader);
    }

    private Field ReadField(CXCursor f, string owner)
    {
        string name = Identifier(Clang.Spelling(f));
        CXType t = Clang.CursorType(f);
        if (t.kind == TypeKind.ConstantArray)
        {
            string element = Cs(Clang.ArrayElement(t), f);
            if (!IsPrimitive(element))
                Error(f, $"{owner}.{name}: an array of {element} (C# fixed buffers hold primitive types only)");
            return new Field(name, $"fixed {element} {name}[{Clang.ArraySize(t)}]", true, Line(f));
        }
        if (t.kind == TypeKind.IncompleteArray)
            Error(f, $"{owner}.{name}: a flexible array member is not blittable");
        return new Field(name, $"{Cs(t, f)} {name}", false, Line(f));
    }

    private void ReadEnum(CXCursor c)
    {
        var members = Clang.Children(c).Where(m => m.kind == CursorKind.EnumConstantDecl)
            .Select(m => (CName: Clang.Spelling(m), Value: Clang.EnumConstantValue(m), Line: Line(m))).ToList();
        if (Clang.IsAnonymous(c) != 0)
        {
            // enum { PLOVER_LOG_ERROR = 0, ... }: constants of type int, as in C
            foreach (var m in members)
                _model.Constants.Add(new Constant(m.CName, ConstName(m.CName), "int", m.Value.ToString(), m.Line));
            return;
        }
        string underlying = Cs(Clang.EnumIntegerType(c), c);
        string name = RecordName(c);
        _model.Enums.Add(new EnumDef(name, underlying, members.Select(m => (ConstName(m.CName), m.Value, m.Line)).ToList(), Line(c)));
    }

    private void ReadTypedef(CXCursor c)
    {
        string name = Clang.Spelling(c);
        CXType t = Desugar(Clang.TypedefUnderlying(c));
        switch (t.kind)
        {
            case TypeKind.Record or TypeKind.Enum:
                // typedef struct X {...} X: the struct itself (declared inside the typedef or before it)
                CXCursor decl = Clang.TypeDeclaration(t);
                if (!FromMainFile(decl))
                    Error(c, $"typedef {name} of an outside type");
                else if (t.kind == TypeKind.Record && Clang.IsDefinition(decl) != 0 && _emittedRecords.Add(Usr(decl)))
                    _model.Structs.Add(ReadStruct(decl, fromHeader: true));
                break;
            case TypeKind.Pointer when IsFunction(Clang.Pointee(t)):
                // spelt out in full: one using alias cannot name another
                _inlineAliases = true;
                _model.FunctionPointers.Add(new FunctionPointer(name, FunctionPointerType(Clang.Pointee(t), c), Line(c)));
                _inlineAliases = false;
                _functionPointerNames.Add(name);
                break;
            default:
                Error(c, $"typedef {name}: only typedefs of structs, enums and function pointers are mirrored");
                break;
        }
    }

    /// <summary>Object-like macros, evaluated by the compiler: a second parse declares one variable per macro,
    /// typed and initialised by it, so that PLOVER_ABI_VERSION's (uint32_t) cast gives a uint. Macros that are no
    /// expression (the include guard) fail to compile there and are not constants.</summary>
    private void ReadMacros(void* index, List<CXCursor> macros)
    {
        var names = macros.Where(m => Clang.IsMacroFunctionLike(m) == 0 && Clang.IsMacroBuiltin(m) == 0)
            .Select(m => (Name: Clang.Spelling(m), Line: Line(m))).ToList();
        var source = new StringBuilder($"#include \"{_header}\"\n");
        foreach (var (name, _) in names)
            source.Append($"static const __typeof__(({name})) {MacroPrefix}{name} = ({name});\n");
        string file = Path.Combine(Path.GetDirectoryName(_header)!, "plover_abigen_macros.c");
        void* tu = Parse(index, file, source.ToString(), 0);
        try
        {
            var failedLines = Errors(tu).Select(e => e.Line).ToHashSet();
            var lines = names.Select((m, i) => (m.Name, m.Line, SourceLine: (uint)i + 2)).ToList();
            var vars = Clang.Children(Clang.TranslationUnitCursor(tu))
                .Where(v => v.kind == CursorKind.VarDecl && FromMainFile(v)).ToDictionary(v => Clang.Spelling(v));
            foreach (var (name, line, sourceLine) in lines)
            {
                if (failedLines.Contains(sourceLine) || !vars.TryGetValue(MacroPrefix + name, out CXCursor v))
                    continue; // not an expression
                Constant? k = Evaluate(name, line, v);
                if (k != null)
                    _model.Constants.Add(k);
            }
        }
        finally
        {
            Clang.DisposeTranslationUnit(tu);
        }
        // the constants in header order (macros and enum constants interleaved as written)
        _model.Constants.Sort((a, b) => a.Line.CompareTo(b.Line));
    }

    private Constant? Evaluate(string name, uint line, CXCursor v)
    {
        CXType t = Clang.CursorType(v);
        void* r = Clang.Evaluate(v);
        if (r == null)
            return null;
        try
        {
            switch (Clang.EvalKindOf(r))
            {
                case EvalKind.StrLiteral:
                    string s = System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)Clang.EvalAsStr(r)) ?? "";
                    return new Constant(name, ConstName(name), "string", Literal(s), line);
                case EvalKind.Int:
                    string type = Cs(t, v);
                    bool unsigned = type is "byte" or "ushort" or "uint" or "ulong" or "nuint";
                    string value = unsigned ? Clang.EvalAsUnsigned(r).ToString() : Clang.EvalAsLong(r).ToString();
                    return new Constant(name, ConstName(name), type == "nuint" ? "ulong" : type == "nint" ? "long" : type, value, line);
                default:
                    _errors.Add($"{Path.GetFileName(_header)}:{line}: macro {name} is neither an integer nor a string");
                    return null;
            }
        }
        finally
        {
            Clang.EvalDispose(r);
        }
    }

    // -------------------------------------------------------------------------------- types

    /// <summary>The C# type of a C type: fixed-width typedefs by name, function pointers as delegate*
    /// unmanaged[Cdecl] (or the header's typedef name for one), structs by their mirror's name.</summary>
    private string Cs(CXType t, CXCursor where)
    {
        switch (t.kind)
        {
            case TypeKind.Elaborated:
                return Cs(Clang.NamedType(t), where);
            case TypeKind.Typedef:
            {
                CXCursor decl = Clang.TypeDeclaration(t);
                string name = Clang.Spelling(decl);
                if (FixedWidth.TryGetValue(name, out string? cs))
                    return cs;
                if (!_inlineAliases && _functionPointerNames.Contains(name))
                    return name;
                return Cs(Clang.TypedefUnderlying(decl), where);
            }
            case TypeKind.Pointer:
            {
                CXType pointee = Clang.Pointee(t);
                return IsFunction(pointee) ? FunctionPointerType(pointee, where) : Cs(pointee, where) + "*";
            }
            case TypeKind.Record:
            {
                CXCursor decl = Clang.TypeDeclaration(t);
                if (!FromMainFile(decl) && _emittedRecords.Add(Usr(decl)))
                    _outsideRecords.Add(decl);
                return RecordName(decl);
            }
            case TypeKind.Enum:
            {
                CXCursor decl = Clang.TypeDeclaration(t);
                return Clang.IsAnonymous(decl) != 0 ? "int" : RecordName(decl);
            }
            case TypeKind.Void: return "void";
            case TypeKind.CharS or TypeKind.CharU or TypeKind.UChar: return "byte";
            case TypeKind.SChar: return "sbyte";
            case TypeKind.UShort: return "ushort";
            case TypeKind.Short: return "short";
            case TypeKind.UInt: return "uint";
            case TypeKind.Int: return "int";
            case TypeKind.ULong: return "nuint";
            case TypeKind.Long: return "nint";
            case TypeKind.ULongLong: return "ulong";
            case TypeKind.LongLong: return "long";
            case TypeKind.Float: return "float";
            case TypeKind.Double: return "double";
            case TypeKind.FunctionProto or TypeKind.FunctionNoProto:
                Error(where, "a function type that is not behind a pointer");
                return "void";
            default:
                if (t.kind == (TypeKind)1) // CXType_Unexposed, e.g. a parenthesised type: its canonical form
                {
                    CXType canonical = Clang.Canonical(t);
                    if (canonical.kind != (TypeKind)1)
                        return Cs(canonical, where);
                }
                Error(where, $"type '{Clang.Spelling(t)}' (kind {(int)t.kind}) is not mirrored by the generator");
                return "void";
        }
    }

    private string FunctionPointerType(CXType function, CXCursor where)
    {
        CXType f = Desugar(function);
        if (f.kind != TypeKind.FunctionProto)
        {
            Error(where, "a function pointer without a prototype (write (void) for no arguments)");
            return "void*";
        }
        var parts = new List<string>();
        int n = Clang.NumArgTypes(f);
        for (uint i = 0; i < n; i++)
            parts.Add(Cs(Clang.ArgType(f, i), where));
        parts.Add(Cs(Clang.ResultType(f), where));
        return $"delegate* unmanaged[Cdecl]<{string.Join(", ", parts)}>";
    }

    private static bool IsFunction(CXType t)
    {
        TypeKind k = Clang.Canonical(t).kind;
        return k == TypeKind.FunctionProto || k == TypeKind.FunctionNoProto;
    }

    /// <summary>Through elaborated and parenthesised (unexposed) sugar, keeping typedef names.</summary>
    private static CXType Desugar(CXType t)
    {
        while (true)
        {
            if (t.kind == TypeKind.Elaborated)
                t = Clang.NamedType(t);
            else if (t.kind == (TypeKind)1)
                t = Clang.Canonical(t);
            else
                return t;
        }
    }

    private string RecordName(CXCursor decl)
    {
        if (_recordNames.TryGetValue(Usr(decl), out string? name))
            return name;
        return Pascal(Clang.Spelling(decl));
    }

    private static string Usr(CXCursor c) => Clang.Take(Clang.CursorUsr(c));

    private static bool IsPrimitive(string cs) =>
        cs is "byte" or "sbyte" or "ushort" or "short" or "uint" or "int" or "ulong" or "long" or "float" or "double" or "nint" or "nuint";

    // -------------------------------------------------------------------------------- names

    private static readonly HashSet<string> Keywords =
    [
        "abstract", "as", "base", "bool", "break", "byte", "case", "catch", "char", "checked", "class", "const",
        "continue", "decimal", "default", "delegate", "do", "double", "else", "enum", "event", "explicit", "extern",
        "false", "finally", "fixed", "float", "for", "foreach", "goto", "if", "implicit", "in", "int", "interface",
        "internal", "is", "lock", "long", "namespace", "new", "null", "object", "operator", "out", "override",
        "params", "private", "protected", "public", "readonly", "ref", "return", "sbyte", "sealed", "short",
        "sizeof", "stackalloc", "static", "string", "struct", "switch", "this", "throw", "true", "try", "typeof",
        "uint", "ulong", "unchecked", "unsafe", "ushort", "using", "virtual", "void", "volatile", "while",
    ];

    private static string Identifier(string c) => Keywords.Contains(c) ? "@" + c : c;

    /// <summary>PLOVER_LOG_ERROR -> LogError, PLOVER_ABI_MAJOR -> Major (the class is PloverAbi already).</summary>
    public static string ConstName(string c)
    {
        foreach (string prefix in new[] { "PLOVER_ABI_", "PLOVER_" })
            if (c.StartsWith(prefix, StringComparison.Ordinal) && c.Length > prefix.Length)
                return Pascal(c[prefix.Length..]);
        return Pascal(c);
    }

    /// <summary>iovec -> Iovec, LOG_ERROR -> LogError, already Pascal names unchanged.</summary>
    public static string Pascal(string c)
    {
        if (!c.Contains('_') && c.Any(char.IsLower))
            return char.ToUpperInvariant(c[0]) + c[1..];
        var sb = new StringBuilder();
        foreach (string part in c.Split('_', StringSplitOptions.RemoveEmptyEntries))
            sb.Append(char.ToUpperInvariant(part[0])).Append(part[1..].ToLowerInvariant());
        return sb.ToString();
    }

    private static string Literal(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char ch in s)
            sb.Append(ch switch
            {
                '"' => "\\\"", '\\' => "\\\\", '\n' => "\\n", '\r' => "\\r", '\t' => "\\t",
                < ' ' => $"\\u{(int)ch:x4}",
                _ => ch.ToString(),
            });
        return sb.Append('"').ToString();
    }
}
